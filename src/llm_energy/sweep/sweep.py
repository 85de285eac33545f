"""Run a sweep spec: expand, skip what is stored, rule out infeasible batches, execute, store.

Resumable by construction: each point's runs are written in one transaction as soon as the point
finishes, keyed by `point_id` and the environment's `env_id`; a rerun skips points stored with status
`ok` in the same environment (and failed ones unless `retry_failed`). A process killed at any moment,
kill -9 included, loses at most the point in flight and never stores one twice.

Concurrent sweeps on one database (several processes, local or Ray executors alike) measure each
point once: the driver claims a point in the store before measuring it (`store.claims`), re-checking
what is stored at that moment; the claim of a killed sweep is stale and taken over by the next one.

GPU-settings axes (`gpu_clocks_mhz`, `power_limits_w`) are refused without consent and checked
against the GPU before the first point is measured; each such point is part of the point id, so
resuming works as for any other axis (`env_id` is that of the GPU at its own settings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llm_energy.engines import engine_descriptor
from llm_energy.errors import GpuSettingsError, StoreError
from llm_energy.records import RunResult
from llm_energy.store import Store
from llm_energy.store.claims import PointClaims
from llm_energy.sweep.executors import Executor, Group, LocalExecutor, RayExecutor, failed_result
from llm_energy.sweep.runner import RunOptions
from llm_energy.sweep.spec import Point, SweepSpec
from llm_energy.sweep.worker import GpuFactory, local_devices, validate_points_gpu_settings

logger = logging.getLogger(__name__)

CLAIM_POLL_S = 0.5
"""How often a sweep looks again at a point another live sweep is measuring."""


@dataclass
class SweepSummary:
    """What a sweep did."""

    total: int = 0
    skipped: int = 0
    measured: int = 0
    ok: int = 0
    oom: int = 0
    error: int = 0
    infeasible: int = 0
    over_budget: int = 0
    """Points not started because the sweep's time budget was spent (`run_sweep(time_budget_s=...)`)."""
    last: RunResult | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def settled(self) -> int:
        """Points this sweep is done with, measured or not (a progress bar's count)."""
        return self.skipped + self.measured + self.infeasible + self.over_budget


def group_points(points: Sequence[Point]) -> list[Group]:
    """Group points that share a loaded model, keeping each group's order (shape, then batch size)."""
    groups: dict[Any, Group] = {}
    for p in points:
        groups.setdefault(p.group_key(), []).append(p)
    return list(groups.values())


def environment_id(point: Point) -> str:
    """Return the env_id results of `point` will carry on this machine (for resume decisions)."""
    from llm_energy.env import collect_env

    descriptor = engine_descriptor(point.engine)
    if descriptor.simulated:
        from llm_energy.meters.simulated import SimClock, SimulatedGpu

        return str(collect_env([SimulatedGpu(SimClock())])["env_id"])
    gpus, cpus, _ = local_devices(point.device, probe_update_period=False)
    return str(collect_env(gpus, cpus, packages=descriptor.packages)["env_id"])


def estimate_gpu_s(points: Sequence[Point], options: RunOptions, idle_s: float) -> float:
    """A rough wall-time estimate of measuring `points` (for `--dry-run`); says nothing precise."""
    total = 0.0
    for group in group_points(points):
        descriptor = engine_descriptor(group[0].engine)  # a group shares its engine
        total += idle_s + descriptor.load_s
        for p in group:
            total += (
                descriptor.compile_s.get(p.mode or "", 0.0) + 3 * options.target_window_s * options.repeats
            )
    return total


def check_sweep_gpu_settings(
    spec: SweepSpec,
    points: Sequence[Point],
    *,
    allow: bool = False,
    executor: str = "local",
    gpu_factory: GpuFactory | None = None,
) -> bool:
    """Refuse GPU-settings axes without consent and check every value against its GPU, changing nothing.

    Args:
        spec: The sweep (its `allow_gpu_settings` counts as consent).
        points: Its points.
        allow: `--allow-gpu-settings`.
        executor: With `ray`, a GPU the driver cannot open is left to the workers to check.
        gpu_factory: Opens a real GPU (default: Zeus).

    Returns:
        Whether changing GPU settings is allowed.

    Raises:
        ConfigError: settings without consent or privilege, on the CPU, or a value the GPU does not
            support (the message names it).
        GpuSettingsError: a GPU cannot be opened (local executor).
    """
    spec.check_gpu_settings_allowed(allow)
    allowed = allow or spec.allow_gpu_settings
    if any(p.changes_gpu_settings for p in points):
        try:
            validate_points_gpu_settings(points, allow=allowed, gpu_factory=gpu_factory)
        except GpuSettingsError as exc:
            if executor == "local":
                raise
            logger.warning(
                "cannot check the GPU settings here (%s); each worker checks them at its start", exc
            )
    return allowed


def _describe(point: Point) -> str:
    text = (
        f"{point.model} {point.engine}/{point.mode} bs{point.batch_size} "
        f"in{point.input_len}/out{point.output_len}"
    )
    if point.gpu_clock_mhz is not None:
        text += f" @{point.gpu_clock_mhz}MHz"
    if point.power_limit_w is not None:
        text += f" @{point.power_limit_w:g}W"
    return text


class _SweepRun:
    """The driver's side of one sweep: claims points, rules out infeasible batches, stores results."""

    def __init__(
        self,
        store: Store,
        claims: PointClaims,
        summary: SweepSummary,
        on_point: Callable[[SweepSummary], None] | None,
        deadline: float | None = None,
    ) -> None:
        self.store = store
        self.claims = claims
        self.summary = summary
        self.on_point = on_point
        self.env_ids: dict[Any, str] = {}
        self.snapshot: dict[str, dict[str, set[str]]] = {}
        self.oom_at: dict[tuple[Any, ...], int] = {}
        self.deferred: list[Point] = []
        self.deadline = deadline
        """time.monotonic() after which no point starts (None: no budget)."""

    def env_of(self, point: Point) -> str:
        # The environment depends on where a point runs and on its engine's packages (a vLLM run's id holds
        # vLLM's version, an HF run's does not): detect once per such pair, or a resumed sweep that mixes
        # the two looks for vLLM's stored runs under HF's id and measures them again.
        descriptor = engine_descriptor(point.engine)
        key = (descriptor.simulated, descriptor.packages, point.device)
        if key not in self.env_ids:
            self.env_ids[key] = environment_id(point)
        return self.env_ids[key]

    def _stored_ok(self, point: Point) -> bool:
        # Stored ok points never go away: a snapshot taken once saves a write transaction each.
        env_id = self.env_of(point)
        if env_id not in self.snapshot:
            self.snapshot[env_id] = self.store.point_statuses(env_id)
        return "ok" in self.snapshot[env_id].get(point.point_id(), set())

    def plan(self, point: Point) -> bool:
        """First pass: claim `point`; one another live sweep measures now is deferred, not waited for."""
        return self._plan(point, wait=False)

    def plan_waiting(self, point: Point) -> bool:
        """Second pass: wait until a deferred point is stored elsewhere or can be claimed here."""
        return self._plan(point, wait=True)

    def _spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _plan(self, point: Point, *, wait: bool) -> bool:
        outcome = (
            "stored" if self._stored_ok(point) else self.claims.claim(point.point_id(), self.env_of(point))
        )
        while outcome == "busy" and wait and not self._spent():
            time.sleep(CLAIM_POLL_S)
            outcome = self.claims.claim(point.point_id(), self.env_of(point))
        if outcome == "stored":
            self.summary.skipped += 1
            self._notify()
            return False
        if self._spent():
            # Not started here, whether claimed (the claim goes with the sweep's others when it ends) or held
            # by another sweep (not waited for): a resumed sweep takes it.
            self.summary.over_budget += 1
            self._notify()
            return False
        if outcome == "busy":
            self.deferred.append(point)
            return False
        smallest_oom = self.oom_at.get(_shape(point))
        if smallest_oom is not None and point.batch_size > smallest_oom:
            msg = f"not tried: batch {smallest_oom} already ran out of memory at this shape"
            result = failed_result(point, "oom", msg, env_id=self.env_of(point))
            self.claims.store_and_release(point.point_id(), self.env_of(point), [result])
            self.summary.infeasible += 1
            self._notify()
            return False
        return True

    def sink(self, point: Point, results: list[RunResult]) -> bool:
        """Store a measured point's runs and release its claim; learn from an out-of-memory batch."""
        env_id = self.env_of(point)
        # Results made by the driver (worker died, time limit) carry no environment: tag them so a
        # resumed sweep recognises them.
        results = [r if r.env.get("env_id") else replace(r, env={**r.env, "env_id": env_id}) for r in results]
        if not self.claims.store_and_release(point.point_id(), env_id, results):
            self.summary.skipped += 1  # another sweep took the claim over and stored it first
            self._notify()
            return True
        summary = self.summary
        summary.measured += 1
        for r in results:
            setattr(summary, r.status, getattr(summary, r.status) + 1)
            summary.last = r
            if r.status != "ok":
                summary.failures.append(f"{_describe(point)}: {r.status}: {r.error}")
        if any(r.status == "oom" for r in results):
            key = _shape(point)
            self.oom_at[key] = min(point.batch_size, self.oom_at.get(key, point.batch_size))
        self._notify()
        return True

    def _notify(self) -> None:
        if self.on_point is not None:
            self.on_point(self.summary)


def _shape(point: Point) -> tuple[Any, ...]:
    return (*point.group_key(), point.input_len, point.output_len)


def run_sweep(
    spec: SweepSpec,
    store: Store,
    *,
    executor: str = "local",
    retry_failed: bool = False,
    address: str | None = None,
    on_point: Callable[[SweepSummary], None] | None = None,
    executor_kwargs: dict[str, Any] | None = None,
    allow_gpu_settings: bool = False,
    time_budget_s: float | None = None,
) -> SweepSummary:
    """Measure every point of `spec` not yet stored, writing each point's runs as it finishes.

    With `time_budget_s`, no point starts once that many seconds have passed since the call (one already
    started finishes); the rest are counted in `over_budget`, unclaimed, for a resumed sweep.

    Several sweeps may run on one database at once: each point is claimed before it is measured
    (`store.claims`), so it is measured and stored once; a point another sweep is measuring is
    left to it and, once this sweep's own points are done, waited for (and taken over if that
    sweep dies).

    Raises:
        ConfigError: GPU-settings axes without `allow_gpu_settings` (here or in the spec), a setting
            the GPU does not support, or (ray) points needing more GPUs than the cluster has: raised
            before anything is measured or stored.
    """
    points = spec.points()
    allowed = check_sweep_gpu_settings(spec, points, allow=allow_gpu_settings, executor=executor)
    options = RunOptions(
        target_window_s=spec.window_s,
        repeats=spec.repeats,
        time_limit_s=spec.time_limit_s,
        allow_gpu_settings=allowed,
    )
    summary = SweepSummary(total=len(points))
    runner = make_executor(
        executor,
        options,
        idle_s=spec.idle_s,
        sweep_name=spec.name,
        address=address,
        **(executor_kwargs or {}),
    )
    claims = PointClaims(store, retry_failed=retry_failed)
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    sweep = _SweepRun(store, claims, summary, on_point, deadline)
    try:
        with claims.keep_alive():
            runner.run(group_points(points), sweep.sink, sweep.plan)
            if sweep.deferred:
                logger.info(
                    "%d point(s) were being measured by another sweep: waiting for them", len(sweep.deferred)
                )
                runner.run(group_points(sweep.deferred), sweep.sink, sweep.plan_waiting)
    finally:
        try:
            claims.release_all()
        except StoreError as exc:  # the claims expire with their lease; keep the first error
            logger.warning("could not release this sweep's point claims: %s", exc)
    return summary


def make_executor(name: str, options: RunOptions, **kwargs: Any) -> Executor:
    """Return the executor registered as `name` (`local` or `ray`).

    Raises:
        ConfigError: unknown executor name, or Ray missing for `ray`.
    """
    from llm_energy.errors import ConfigError

    if name == "local":
        kwargs.pop("address", None)
        return LocalExecutor(options, **kwargs)
    if name == "ray":
        return RayExecutor(options, **kwargs)
    raise ConfigError(f"unknown executor {name!r}; valid executors: local, ray")

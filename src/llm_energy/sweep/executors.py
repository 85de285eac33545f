"""Executors run groups of points and stream results back to the driver, which alone writes the store.

* `local` — one process; each group's model stays loaded across its points.
* `ray` — each group becomes a Ray actor holding the GPUs its points need (`gpus_needed`: its
  tensor-parallel size, none for CPU or simulated points); the driver calls it point by point, so
  results arrive as they finish. A spec whose points need more GPUs than any node of the cluster has
  is refused before anything runs (an actor asking for them would wait forever). A worker that dies
  mid-point turns that point into an `error` result and the group goes on with a fresh actor.
  `pip install llm-energy[ray]`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from llm_energy.compat import shield_broken_amdsmi
from llm_energy.errors import ConfigError
from llm_energy.records import RunResult
from llm_energy.sweep.runner import RunOptions
from llm_energy.sweep.spec import Point
from llm_energy.sweep.worker import GroupWorker

logger = logging.getLogger(__name__)

Group = list[Point]
ResultSink = Callable[[Point, list[RunResult]], bool]
"""Called with each finished point's results; returns False to skip the rest of the group."""


class Executor(Protocol):
    """Runs groups of points; each finished point is handed to `sink` (the driver writes the store)."""

    name: ClassVar[str]

    def run(self, groups: Sequence[Group], sink: ResultSink, plan: Callable[[Point], bool]) -> None:
        """Run every point of `groups` for which `plan(point)` is True at the time it comes up."""
        ...


def failed_result(point: Point, status: str, error: str, *, env_id: str | None = None) -> RunResult:
    """A result for a point that never produced measurements (worker died, time limit, not tried)."""
    return RunResult(
        run_id=uuid.uuid4().hex,
        config={**point.model_dump(), "point_id": point.point_id()},
        env={} if env_id is None else {"env_id": env_id},
        status="oom" if status == "oom" else "error",
        error=error,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


class LocalExecutor:
    """In-process execution, one group at a time, its model loaded once."""

    name: ClassVar[str] = "local"

    def __init__(self, options: RunOptions, *, idle_s: float = 2.0, sweep_name: str = "") -> None:
        self.options = options
        self.idle_s = idle_s
        self.sweep_name = sweep_name

    def run(self, groups: Sequence[Group], sink: ResultSink, plan: Callable[[Point], bool]) -> None:
        """Run the groups in order; a group whose points are all planned away is never loaded."""
        for group in groups:
            todo = _planned(group, plan)
            first = next(todo, None)
            if first is None:
                continue
            worker = GroupWorker(first, self.options, idle_s=self.idle_s, sweep_name=self.sweep_name)
            try:
                worker.open()
                point: Point | None = first
                while point is not None:
                    if not sink(point, worker.run(point)):
                        break
                    point = next(todo, None)
            finally:
                worker.close()


def gpus_needed(point: Point, *, cluster_has_gpus: bool = True) -> int:
    """Return the GPUs the actor measuring `point` must hold.

    None for the simulated engine or a CPU point (and for `auto` on a cluster without GPUs, where it
    runs on the CPU); else the point's tensor-parallel size.
    """
    from llm_energy.engines import engine_descriptor

    if engine_descriptor(point.engine).simulated or point.device == "cpu":
        return 0
    if point.device == "auto" and not cluster_has_gpus:
        return 0
    return point.tp_size


def _planned(group: Group, plan: Callable[[Point], bool]) -> Iterator[Point]:
    # Lazy: `plan` is asked when a point comes up, so an OOM earlier in the group can rule out
    # larger batches of the same shape.
    return (p for p in group if plan(p))


class RayExecutor:
    """One Ray actor per group; the driver pulls results point by point.

    Args:
        options: How each point is measured.
        address: Ray cluster address (`auto`, `ray://...`) or None to start a local one.
        init_kwargs: Extra `ray.init` arguments (e.g. `num_cpus` for a local cluster).
    """

    name: ClassVar[str] = "ray"

    def __init__(
        self,
        options: RunOptions,
        *,
        idle_s: float = 2.0,
        sweep_name: str = "",
        address: str | None = None,
        **init_kwargs: Any,
    ) -> None:
        worker_env = shield_broken_amdsmi()
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the ray executor needs Ray: pip install 'llm-energy[ray]'") from exc
        self.ray = ray
        self.options = options
        self.idle_s = idle_s
        self.sweep_name = sweep_name
        self.node_gpus = 0.0
        if not ray.is_initialized():
            runtime_env = {"env_vars": worker_env} if worker_env else None
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env,
                **init_kwargs,
            )

    def _actor(self, first: Point) -> Any:
        gpus = gpus_needed(first, cluster_has_gpus=self.node_gpus > 0)
        remote = self.ray.remote(GroupWorker).options(num_gpus=gpus, max_restarts=0)
        return remote.remote(first, self.options, idle_s=self.idle_s, sweep_name=self.sweep_name)

    def check_resources(self, groups: Sequence[Group]) -> None:
        """Refuse groups whose points need more GPUs than the cluster's largest node has.

        Raises:
            ConfigError: naming the first such point, what it needs and what the cluster has.
        """
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        self.node_gpus = max((float(n.get("Resources", {}).get("GPU", 0.0)) for n in nodes), default=0.0)
        for group in groups:
            first = group[0]
            need = gpus_needed(first, cluster_has_gpus=self.node_gpus > 0)
            if need > self.node_gpus:
                raise ConfigError(
                    f"point {first.model} {first.engine}/{first.mode} on {first.device} needs {need} GPU(s), "
                    f"but no node of the Ray cluster has more than {self.node_gpus:g}: use a cluster with "
                    "GPUs, or device: cpu for CPU points"
                )

    def run(self, groups: Sequence[Group], sink: ResultSink, plan: Callable[[Point], bool]) -> None:
        """Run each group in its own actor, points in order, killed points recorded as errors."""
        from ray.exceptions import GetTimeoutError, RayActorError

        self.check_resources(groups)
        timeout_s = None if self.options.time_limit_s is None else 3 * self.options.time_limit_s
        for group in groups:
            todo = _planned(group, plan)
            point = next(todo, None)
            actor = None
            while point is not None:
                if actor is None:
                    actor = self._actor(point)
                try:
                    results = self.ray.get(actor.run.remote(point), timeout=timeout_s)
                except RayActorError as exc:
                    logger.warning("worker died during %s: %s", point, exc)
                    results = [failed_result(point, "error", f"worker died mid-point: {type(exc).__name__}")]
                    actor = None  # a fresh actor (and model load) for the rest of the group
                except GetTimeoutError:
                    self.ray.kill(actor)
                    actor = None
                    results = [failed_result(point, "error", f"time limit: killed after {timeout_s:.0f} s")]
                if not sink(point, results):
                    break
                point = next(todo, None)
            if actor is not None:
                self.ray.get(actor.close.remote())
                self.ray.kill(actor)


EXECUTORS: dict[str, str] = {
    "local": "llm_energy.sweep.executors:LocalExecutor",
    "ray": "llm_energy.sweep.executors:RayExecutor",
}

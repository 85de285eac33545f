"""One measured serving run: warm up, meter the GPUs, replay the load, monitor the server, summarise.

`replay_servers` is what `llm-energy replay` and `benchmarks/online_gpu.py` call once their servers
are up (launched by `servers.ServerGroup`, or external URLs). It promises:

- the servers are warmed up first (`warmup_requests` per replica, not measured): transformers serve
  allocates its KV cache on the first request, vLLM compiles lazily for new shapes;
- idle power is measured before the load (`idle_s`), energy is read in consecutive meter windows of
  `window_period_s` over the whole load, and the frontends' CPU plus the GPUs' power are sampled
  (`lag.ServerMonitor`) on the same clock as the request records;
- the result holds the records, the latency/SLO summary, the steady-state energy (warm-up and drain
  excluded), per-request joules, per-GPU energy, the client-token vs GPU-work windows, the frontend
  lag verdict, and the power time series; a server that died leaves `partial=True` and its reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_energy.errors import ConfigError, MeasurementWarning
from llm_energy.meters.base import EnergyMeter, GpuDevice, gpu_domain
from llm_energy.records import Request
from llm_energy.serving.balancer import Balancer
from llm_energy.serving.lag import (
    FrontendLag,
    MonitorSample,
    ServerMonitor,
    WindowComparison,
    compare_windows,
    detect_frontend_lag,
    interval_energy_j,
)
from llm_energy.serving.loadgen import Mode, run_load
from llm_energy.serving.metrics import (
    EnergyAttribution,
    ServingEnergy,
    ServingSummary,
    attribute_energy,
    serving_energy,
    steady_state_window,
    summarise,
)
from llm_energy.serving.records import RequestRecord
from llm_energy.serving.servers import Server

__all__ = ["ServingRun", "WindowRecorder", "replay_servers"]

_log = logging.getLogger(__name__)


class WindowRecorder:
    """Consecutive meter windows of `period_s` on a background thread.

    `windows` holds (start_s, end_s, joules of all GPUs); `per_domain` the joules per domain of each
    window, in the same order.
    """

    def __init__(self, meter: EnergyMeter, period_s: float = 0.5) -> None:
        self.meter = meter
        self.period_s = period_s
        self.windows: list[tuple[float, float, float]] = []
        self.per_domain: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-energy-serving-windows", daemon=True)

    def _run(self) -> None:
        i = 0
        while True:
            name = f"serve-{i}"
            t0 = self.meter.clock()
            self.meter.begin_window(name)
            stopped = self._stop.wait(self.period_s)
            # Consecutive windows are summed, so one window's edge error cancels against the next
            # one's: only the whole span's length matters (`replay_servers` warns about that once).
            m = self.meter.end_window(name, warn_short=False)
            self.windows.append((t0, t0 + m.duration_s, m.gpu_energy_j))
            self.per_domain.append(dict(m.energy_j))
            i += 1
            if stopped:
                return

    def __enter__(self) -> WindowRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self.period_s + 5)


@dataclass(frozen=True)
class ServingRun:
    """Everything one serving run measured (see the module docstring).

    Attributes:
        run_id: Unique id of the run.
        created_at: UTC time the run started, ISO 8601.
        config: What was run (server, model, trace, rates, policy, ...): JSON types only.
        records: One record per request, failures included.
        summary: Latencies, throughput and SLO figures over the steady-state window.
        energy: Steady-state energy (None without a GPU).
        attribution: Joules per request (None without a GPU).
        per_gpu_energy_j: Joules per GPU domain over the steady-state window.
        windows: Client-token vs GPU-work window (None without a GPU or tokens).
        lag: Frontend-lag verdict (None without samples).
        samples: The monitor's time series (frontend CPU, GPU power).
        intervals: Meter windows (start_s, end_s, joules of all GPUs).
        idle_power_w: Summed idle power of the GPUs (None when not measured).
        partial: True when a server died during the run.
        exit_reason: Why it died.
        replica_requests: Requests sent to each replica.
        notes: What else the reader should know.
    """

    run_id: str
    created_at: str
    config: Mapping[str, Any]
    records: tuple[RequestRecord, ...]
    summary: ServingSummary
    energy: ServingEnergy | None
    attribution: EnergyAttribution | None
    per_gpu_energy_j: Mapping[str, float]
    windows: WindowComparison | None
    lag: FrontendLag | None
    samples: tuple[MonitorSample, ...]
    intervals: tuple[tuple[float, float, float], ...]
    idle_power_w: float | None
    partial: bool
    exit_reason: str | None
    replica_requests: tuple[int, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def _warm_up(servers: Sequence[Server], count: int, timeout_s: float, seed: int) -> None:
    """Send `count` short requests to each server, one at a time, and check they succeed."""
    if count < 1:
        return
    for server in servers:
        records = asyncio.run(
            run_load(
                server.url,
                [Request(16, 8, 0.0)] * count,
                mode="closed",
                concurrency=1,
                timeout_s=timeout_s,
                server_kind=server.server_kind,
                prompt_words=server.prompt_words,
                token_id_range=server.token_id_range,
                seed=seed + 1_000_003,
            )
        )
        failed = [r for r in records if not r.success]
        if failed:
            raise ConfigError(f"warm-up against {server.url} failed: {failed[0].error}")


def _watch(servers: Sequence[Server]) -> Callable[[], str | None]:
    def reason() -> str | None:
        for i, server in enumerate(servers):
            why = server.exit_reason()
            if why is not None:
                return f"replica {i}: {why}" if len(servers) > 1 else why
        return None

    return reason


def _warn_if_short(span: tuple[float, float], meter: EnergyMeter) -> None:
    """One `MeasurementWarning` when the energy window spans too few counter updates to trust."""
    period_s = max((g.update_period_s for g in meter.gpus), default=0.0)
    need_s = meter.min_window_periods * period_s
    if span[1] - span[0] < need_s:
        warnings.warn(
            f"the energy window lasted {span[1] - span[0]:.2f} s, under {meter.min_window_periods} "
            f"counter update periods ({need_s:.1f} s), so its energy is coarse; send more requests "
            "(--num-requests), replay a longer stretch (--window) or more slowly (--time-scale)",
            MeasurementWarning,
            stacklevel=3,
        )


def replay_servers(
    servers: Sequence[Server],
    requests: Sequence[Request],
    *,
    gpus: Sequence[GpuDevice] = (),
    config: Mapping[str, Any] | None = None,
    mode: Mode = "open",
    concurrency: int | None = None,
    slo_s: Mapping[str, float] | None = None,
    policy: str = "round-robin",
    timeout_s: float = 60.0,
    max_duration_s: float | None = None,
    seed: int = 0,
    idle_s: float = 2.0,
    warmup_requests: int = 2,
    window_period_s: float = 0.5,
    monitor_period_s: float = 0.1,
    model: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
    meter: EnergyMeter | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ServingRun:
    """Warm up, then replay `requests` against `servers` while metering `gpus`; return the run.

    Args:
        servers: Started servers (all of one kind); several are balanced by `policy`.
        requests: What to send (see `loadgen.run_load`).
        gpus: GPUs to meter (those the servers run on); empty: latency only.
        config: What was run, stored with the run (JSON types).
        mode: `open` or `closed`.
        concurrency: Closed-loop users, or an open-loop cap.
        slo_s: SLO bounds in seconds (`parse_slo`).
        policy: `round-robin` or `least-outstanding`.
        timeout_s: Bound on each request, seconds.
        max_duration_s: Send nothing after this many seconds.
        seed: Seed of the prompts.
        idle_s: Idle power measured first, seconds (0: none).
        warmup_requests: Unmeasured requests per server before the run.
        window_period_s: Length of the consecutive meter windows, seconds.
        monitor_period_s: CPU/power sampling period, seconds.
        model: The `model` field of requests (None leaves it out).
        clock: The run's clock (records, meter and monitor share it).
        meter: A meter to use instead of one built on `gpus` (tests).
        on_progress: Called with (requests sent, requests done) as the load runs (`run_load`).

    Raises:
        ConfigError: No server, mixed server kinds, bad arguments, or a failed warm-up.
    """
    if not servers:
        raise ConfigError("no server to replay against")
    kinds = {s.server_kind for s in servers}
    if len(kinds) != 1:
        raise ConfigError(f"replicas must be of one server kind, got {sorted(kinds)}")
    created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _warm_up(servers, warmup_requests, timeout_s, seed)
    own_meter = meter is None and bool(gpus)
    meter = meter if meter is not None else (EnergyMeter(gpus, clock=clock) if gpus else None)
    balancer = Balancer(len(servers), policy)
    first = servers[0]
    load = run_load(
        [s.url for s in servers],
        requests,
        mode=mode,
        concurrency=concurrency,
        clock=clock,
        timeout_s=timeout_s,
        max_duration_s=max_duration_s,
        server_kind=first.server_kind,
        model=model,
        seed=seed,
        token_id_range=first.token_id_range,
        prompt_words=first.prompt_words,
        watch=_watch(servers),
        balancer=balancer,
        on_progress=on_progress,
    )
    notes: list[str] = []
    idle_w: float | None = None
    intervals: list[tuple[float, float, float]] = []
    per_domain: list[dict[str, float]] = []
    monitor = ServerMonitor([s.pid for s in servers], meter.gpus if meter else [], clock, monitor_period_s)
    try:
        if meter is not None and idle_s > 0:
            meter.measure_idle(idle_s)
            idle_w = sum(meter.idle_power_w.get(gpu_domain(g.index), 0.0) for g in meter.gpus)
        if meter is None:
            with monitor:
                records = asyncio.run(load)
        else:
            with WindowRecorder(meter, window_period_s) as recorder, monitor:
                records = asyncio.run(load)
            intervals, per_domain = recorder.windows, recorder.per_domain
    finally:
        if own_meter and meter is not None:
            meter.close()
    exit_reason = _watch(servers)()
    partial = exit_reason is not None or any(r.failure == "server-exit" for r in records)
    if partial:
        notes.append(f"PARTIAL RUN: {exit_reason or 'a server exited'}")
    try:
        steady: tuple[float, float] | None = steady_state_window(records)
    except ConfigError as exc:
        # Too few requests (or a partial run) for a steady state: keep the run, say so, and use the
        # whole run (first send to last completion) for the steady-state figures.
        steady = None
        notes.append(f"no steady-state window ({exc}); energy figures cover the whole run")
    summary = summarise(records, slo_s, steady)
    span = steady or (min(r.sent_s for r in records), max(r.done_s for r in records))
    energy = attribution = windows = None
    per_gpu: dict[str, float] = {}
    if meter is not None and intervals:
        _warn_if_short(span, meter)
    if intervals and span[1] > span[0]:
        energy = serving_energy(records, span, interval_energy_j(intervals, *span), idle_w or None)
        attribution = attribute_energy(records, intervals)
        for domain in sorted({d for w in per_domain for d in w if d.startswith("gpu:")}):
            series = [(a, b, w.get(domain, 0.0)) for (a, b, _), w in zip(intervals, per_domain, strict=True)]
            per_gpu[domain] = interval_energy_j(series, *span)
        try:
            windows = compare_windows(records, intervals, monitor.samples, idle_w)
        except ConfigError as exc:
            notes.append(f"no window comparison: {exc}")
    lag = detect_frontend_lag(monitor.samples, records, idle_w) if monitor.samples else None
    if lag is not None and lag.flagged:
        notes.append(lag.reason)
    run_config = dict(config or {})
    run_config.setdefault("replicas", len(servers))
    run_config.setdefault("policy", policy)
    run_config.setdefault("server_kind", first.server_kind)
    return ServingRun(
        run_id=uuid.uuid4().hex,
        created_at=created_at,
        config=run_config,
        records=tuple(records),
        summary=summary,
        energy=energy,
        attribution=attribution,
        per_gpu_energy_j=per_gpu,
        windows=windows,
        lag=lag,
        samples=tuple(monitor.samples),
        intervals=tuple(intervals),
        idle_power_w=idle_w,
        partial=partial,
        exit_reason=exit_reason,
        replica_requests=tuple(balancer.sent),
        notes=tuple(notes),
    )

"""Frontend lag: sample the server's CPU and the GPUs' power, find where the GPU idles while tokens flow.

The trap (issue 7, H100, vLLM 0.25.1, 1,024 requests in 100 / out 400 at 512 sequences): streamed,
the API-server process saturated one CPU core, the GPU finished its work early and idled, and tokens
kept reaching the client afterwards. A window defined by client-side token arrivals (the ML.ENERGY
benchmark's steady state) then spans GPU idle time and read 0.055–0.059 J/token against 0.034
offline. This module measures both views and says which one a run is in:

- `ServerMonitor` samples, every `period_s` on a background thread, the CPU use of each server's
  frontend process (psutil, percent of one core) and the power of every GPU (`GpuDevice.power_mw`);
- `gpu_work_window` is the span in which the GPUs' summed power is above idle by at least
  `active_fraction` of its range (idle → 95th percentile): the GPU's own work, all of the run's
  tokens are computed inside it;
- `client_token_window` is the span from the arrival of the first `lo` to the first `hi` fraction
  of all output tokens at the client (10% → 90% by default): a client-side steady state;
- `detect_frontend_lag` flags a run when, for at least `min_lag_s`, a frontend sits at ≥
  `cpu_busy_pct` of one core while the GPU power is below the active threshold and tokens still
  arrive;
- `compare_windows` gives energy, J/token and J/request in both windows. J/token of the GPU window
  divides by every output token of the run (they were all computed in it); of the client window by
  the tokens that arrived in it.

All functions but the monitor are pure functions over samples and records.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.meters.base import GpuDevice
from llm_energy.serving.records import RequestRecord
from llm_energy.units import mw_to_w

__all__ = [
    "FrontendLag",
    "MonitorSample",
    "ServerMonitor",
    "WindowComparison",
    "WindowEnergy",
    "active_threshold_w",
    "client_token_window",
    "compare_windows",
    "detect_frontend_lag",
    "gpu_work_window",
    "interval_energy_j",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorSample:
    """One sample of the server side.

    Attributes:
        t_s: Clock time of the sample (the run's clock).
        cpu_pct: CPU use of each server's frontend process since the previous sample, in percent of
            one core (NaN where unknown: no pid, or the process is gone).
        power_w: Power of each GPU in watts (the device's mean over its last update period).
    """

    t_s: float
    cpu_pct: tuple[float, ...]
    power_w: tuple[float, ...]

    @property
    def total_power_w(self) -> float:
        """Summed power of the GPUs in watts."""
        return float(sum(self.power_w))


class ServerMonitor:
    """Sample the frontends' CPU and the GPUs' power on a background thread (a context manager).

    Args:
        pids: Frontend process ids (None entries are not sampled).
        gpus: GPUs whose power is read.
        clock: The run's clock in seconds.
        period_s: Sampling period in seconds; faster than the GPU's ~0.1 s update adds nothing.
    """

    def __init__(
        self,
        pids: Sequence[int | None],
        gpus: Sequence[GpuDevice],
        clock: Callable[[], float],
        period_s: float = 0.1,
    ) -> None:
        self.gpus = list(gpus)
        self.clock = clock
        self.period_s = period_s
        self.samples: list[MonitorSample] = []
        self._procs: list[Any] = []
        try:
            import psutil  # type: ignore[import-untyped]
        except ImportError:  # CPU is then not sampled: lag is judged from power and tokens only
            _log.warning("psutil is not installed: the server's CPU use is not sampled")
            pids = [None] * len(pids)
        for pid in pids:
            try:
                proc = psutil.Process(pid) if pid is not None else None
                if proc is not None:
                    proc.cpu_percent(None)  # the first call only sets the baseline
            except psutil.Error:
                proc = None
            self._procs.append(proc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-energy-server-monitor", daemon=True)

    def sample(self) -> MonitorSample:
        """Take one sample now (the thread calls this; tests may too)."""
        cpu: list[float] = []
        for proc in self._procs:
            try:
                cpu.append(float(proc.cpu_percent(None)) if proc is not None else math.nan)
            except Exception:  # psutil.Error: the process is gone or not readable
                cpu.append(math.nan)
        power: list[float] = []
        for gpu in self.gpus:
            try:
                power.append(mw_to_w(gpu.power_mw()))
            except Exception:  # a failed reading is a gap, not the end of the run
                power.append(math.nan)
        sample = MonitorSample(self.clock(), tuple(cpu), tuple(power))
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> ServerMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.period_s + 5)


def interval_energy_j(intervals: Sequence[tuple[float, float, float]], start_s: float, end_s: float) -> float:
    """Return the energy of (start_s, end_s, joules) intervals inside [start_s, end_s], prorated at edges."""
    total = 0.0
    for w0, w1, e in intervals:
        overlap = min(w1, end_s) - max(w0, start_s)
        if overlap > 0 and w1 > w0:
            total += e * overlap / (w1 - w0)
    return total


def _powers(samples: Sequence[MonitorSample]) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([s.t_s for s in samples], dtype=np.float64)
    p = np.array([s.total_power_w for s in samples], dtype=np.float64)
    keep = np.isfinite(p)
    return t[keep], p[keep]


def active_threshold_w(
    samples: Sequence[MonitorSample], idle_power_w: float | None, active_fraction: float = 0.2
) -> float | None:
    """Return the summed power above which the GPUs count as working, or None without a clear range.

    idle (measured, else the 5th percentile of the samples) + active_fraction x (95th percentile −
    idle). None when that range is under 5 W: the GPUs never worked visibly.
    """
    _, p = _powers(samples)
    if not len(p):
        return None
    idle_w = idle_power_w if idle_power_w is not None else float(np.percentile(p, 5))
    peak_w = float(np.percentile(p, 95))
    if peak_w - idle_w < 5.0:
        return None
    return idle_w + active_fraction * (peak_w - idle_w)


def gpu_work_window(
    samples: Sequence[MonitorSample], idle_power_w: float | None, active_fraction: float = 0.2
) -> tuple[float, float] | None:
    """Return (start_s, end_s) from the first to the last sample above the active threshold, or None."""
    threshold = active_threshold_w(samples, idle_power_w, active_fraction)
    if threshold is None:
        return None
    t, p = _powers(samples)
    active = np.flatnonzero(p > threshold)
    if len(active) < 2:
        return None
    # A power reading is the mean over the update period before it: the work began one period
    # earlier than the first active sample.
    period_s = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    return float(t[active[0]] - period_s), float(t[active[-1]])


def _token_events(records: Sequence[RequestRecord]) -> tuple[np.ndarray, np.ndarray]:
    times: list[float] = []
    weights: list[float] = []
    for r in records:
        if r.success and r.token_times_s:
            per_chunk = r.output_tokens_received / len(r.token_times_s)
            times += r.token_times_s
            weights += [per_chunk] * len(r.token_times_s)
    order = np.argsort(times)
    return np.asarray(times, dtype=np.float64)[order], np.asarray(weights, dtype=np.float64)[order]


def client_token_window(
    records: Sequence[RequestRecord], lo: float = 0.1, hi: float = 0.9
) -> tuple[float, float]:
    """Return the span from the arrival of the first `lo` to the first `hi` fraction of output tokens.

    Raises:
        ConfigError: No token arrived, or not 0 ≤ lo < hi ≤ 1.
    """
    if not 0 <= lo < hi <= 1:
        raise ConfigError(f"token fractions must satisfy 0 ≤ lo < hi ≤ 1, got {lo}, {hi}")
    t, w = _token_events(records)
    if not len(t):
        raise ConfigError("no output token arrived: no client-token window")
    cum = np.cumsum(w) / w.sum()
    start = float(t[min(int(np.searchsorted(cum, lo, side="left")), len(t) - 1)]) if lo > 0 else float(t[0])
    end = float(t[min(int(np.searchsorted(cum, hi, side="left")), len(t) - 1)])
    return start, end


@dataclass(frozen=True)
class FrontendLag:
    """Whether the frontend, not the GPU, paced the run.

    Attributes:
        flagged: True when `lag_s` ≥ the detector's `min_lag_s`.
        lag_s: Seconds in which a frontend was CPU-bound, the GPUs near idle and tokens arriving.
        intervals: The (start_s, end_s) spans making up `lag_s`, merged.
        cpu_peak_pct: Highest frontend CPU use seen, percent of one core (NaN: not sampled).
        active_threshold_w: Summed GPU power above which the GPUs count as working (None: never).
        tokens_after_gpu_window: Fraction of output tokens that reached the client after the GPU
            work window ended (None without a GPU window).
        reason: One line saying what was found.
    """

    flagged: bool
    lag_s: float
    intervals: tuple[tuple[float, float], ...]
    cpu_peak_pct: float
    active_threshold_w: float | None
    tokens_after_gpu_window: float | None
    reason: str


def detect_frontend_lag(
    samples: Sequence[MonitorSample],
    records: Sequence[RequestRecord],
    idle_power_w: float | None,
    *,
    cpu_busy_pct: float = 90.0,
    active_fraction: float = 0.2,
    min_lag_s: float = 1.0,
) -> FrontendLag:
    """Flag frontend lag: CPU-bound frontend + GPUs below the active threshold + tokens arriving.

    Each sample interval (previous sample, this sample] counts as lagging when the busiest frontend
    used ≥ `cpu_busy_pct` of one core over it, the summed GPU power at its end is below the
    threshold (`active_threshold_w`) and at least one token chunk arrived in it.
    """
    cpu_all = [c for s in samples for c in s.cpu_pct if math.isfinite(c)]
    cpu_peak = max(cpu_all) if cpu_all else math.nan
    threshold = active_threshold_w(samples, idle_power_w, active_fraction)
    token_t, token_w = _token_events(records)
    window = gpu_work_window(samples, idle_power_w, active_fraction)
    after = None
    if window is not None and len(token_t):
        after = float(token_w[token_t > window[1]].sum() / token_w.sum())
    spans: list[tuple[float, float]] = []
    if threshold is None:
        # No GPU power range (no GPU metered, or it never left idle): nothing to lag behind.
        return FrontendLag(
            False, 0.0, (), cpu_peak, None, None, "no GPU activity measured: frontend lag not assessed"
        )
    for prev, cur in zip(samples, samples[1:], strict=False):
        cpu = [c for c in cur.cpu_pct if math.isfinite(c)]
        power = cur.total_power_w
        if not cpu or max(cpu) < cpu_busy_pct or not math.isfinite(power):
            continue
        if power >= threshold:
            continue
        lo = int(np.searchsorted(token_t, prev.t_s, side="right"))
        hi = int(np.searchsorted(token_t, cur.t_s, side="right"))
        if hi > lo:
            if spans and spans[-1][1] >= prev.t_s:
                spans[-1] = (spans[-1][0], cur.t_s)
            else:
                spans.append((prev.t_s, cur.t_s))
    lag_s = sum(b - a for a, b in spans)
    flagged = lag_s >= min_lag_s
    if flagged:
        reason = (
            f"frontend lag: {lag_s:.1f} s with a frontend at ≥{cpu_busy_pct:.0f}% of a core, GPU power "
            f"below {threshold:.0f} W and tokens still arriving"
        )
    elif not cpu_all:
        reason = "no frontend CPU samples (external server without a pid): lag not assessed on CPU"
    else:
        reason = f"no frontend lag (peak frontend CPU {cpu_peak:.0f}% of a core)"
    return FrontendLag(flagged, lag_s, tuple(spans), cpu_peak, threshold, after, reason)


@dataclass(frozen=True)
class WindowEnergy:
    """Energy and its per-token and per-request figures over one window.

    Attributes:
        name: `client-token` or `gpu-work`.
        start_s: Window start (clock seconds).
        end_s: Window end (clock seconds).
        energy_j: GPU energy in the window, joules (all GPUs).
        output_tokens: Tokens the window's figures divide by (see `compare_windows`).
        requests: Requests the window's figures divide by.
        energy_per_output_token_j: energy_j / output_tokens (NaN without tokens).
        energy_per_request_j: energy_j / requests (NaN without requests).
    """

    name: str
    start_s: float
    end_s: float
    energy_j: float
    output_tokens: float
    requests: int
    energy_per_output_token_j: float
    energy_per_request_j: float


@dataclass(frozen=True)
class WindowComparison:
    """The client-token window against the GPU-work window (the latter None if the GPU never worked)."""

    client: WindowEnergy
    gpu: WindowEnergy | None


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def compare_windows(
    records: Sequence[RequestRecord],
    intervals: Sequence[tuple[float, float, float]],
    samples: Sequence[MonitorSample],
    idle_power_w: float | None,
    *,
    token_fractions: tuple[float, float] = (0.1, 0.9),
    active_fraction: float = 0.2,
) -> WindowComparison:
    """Return energy, J/token and J/request in the client-token and the GPU-work window.

    Client window: tokens that arrived in it, successful requests completed in it. GPU window: every
    output token and every successful request of the run (their GPU work all lies inside it).

    Args:
        records: The run's records.
        intervals: Meter windows (start_s, end_s, joules) covering the run.
        samples: Monitor samples (for the GPU window).
        idle_power_w: Summed idle power of the GPUs (None: estimated from the samples).
        token_fractions: (lo, hi) of `client_token_window`.
        active_fraction: See `gpu_work_window`.

    Raises:
        ConfigError: No token arrived.
    """
    c0, c1 = client_token_window(records, *token_fractions)
    t, w = _token_events(records)
    ok = [r for r in records if r.success]
    client_tokens = float(w[(t >= c0) & (t <= c1)].sum())
    client_requests = sum(c0 <= r.done_s <= c1 for r in ok)
    e_client = interval_energy_j(intervals, c0, c1)
    client = WindowEnergy(
        "client-token",
        c0,
        c1,
        e_client,
        client_tokens,
        client_requests,
        _ratio(e_client, client_tokens),
        _ratio(e_client, client_requests),
    )
    gw = gpu_work_window(samples, idle_power_w, active_fraction)
    gpu = None
    if gw is not None:
        e_gpu = interval_energy_j(intervals, *gw)
        tokens = float(w.sum())
        gpu = WindowEnergy(
            "gpu-work", gw[0], gw[1], e_gpu, tokens, len(ok), _ratio(e_gpu, tokens), _ratio(e_gpu, len(ok))
        )
    return WindowComparison(client, gpu)

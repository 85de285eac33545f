"""Energy of named windows, from GPU energy counters, sampled power, and CPU/DRAM counters.

The meter promises, for every window it closes:

* energy per domain (`gpu:i`, `cpu:i`, `dram:i`) with the source of each domain;
* an uncertainty bound per domain that covers the true energy, derived from the device's update
  period: NVML refreshes the H100's energy counter and power reading only every ~100 ms, so each
  window edge can miss up to one update period of energy (see docs/methodology.md);
* a flag (and a `MeasurementWarning`) when a window is shorter than `min_window_periods` update
  periods, when a counter went backwards, or when a domain is estimated rather than measured;
* never a negative energy: a domain whose counter reset is omitted and flagged.

Devices and the clock are injected (`gpus=`, `cpus=`, `clock=`), so the same code runs against NVML
on a GPU and against `meters.simulated` in tests. CUDA is asynchronous, so the caller passes a
`sync` callable that the meter calls at both edges of every window.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llm_energy.errors import CounterUnavailable, MeasurementWarning, MeterError
from llm_energy.records import Measurement, Source
from llm_energy.units import mj_to_j, mw_to_w, uj_to_j

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""A monotonic clock returning seconds."""

MIN_WINDOW_PERIODS = 10
"""Windows shorter than this many counter update periods are flagged `short-window`."""

COUNTER_QUANTUM_J = 1e-3
"""NVML's counter counts whole millijoules: each reading is truncated by up to this much."""


@runtime_checkable
class GpuDevice(Protocol):
    """One GPU as the meter sees it: a millijoule energy counter and a milliwatt power reading."""

    @property
    def index(self) -> int:
        """Device index, used for the domain name `gpu:<index>`."""
        ...

    @property
    def update_period_s(self) -> float:
        """How often the counter and power reading refresh, in seconds."""
        ...

    def total_energy_mj(self) -> int:
        """Return the energy counter in millijoules.

        Raises:
            CounterUnavailable: the device has no energy counter.
            MeterError: the reading failed.
        """
        ...

    def power_mw(self) -> int:
        """Return the current power reading in milliwatts."""
        ...

    def info(self) -> dict[str, Any]:
        """Return static and current device facts (name, power limit, clocks, driver...)."""
        ...


@runtime_checkable
class CpuDevice(Protocol):
    """CPU-side energy counters (RAPL, or an estimate exposed as a counter)."""

    @property
    def source(self) -> Source:
        """`measured` for hardware counters, `estimated` for models such as TDP x utilisation."""
        ...

    def domains(self) -> list[str]:
        """Return the domain names this device reports, e.g. `["cpu:0", "dram:0"]`."""
        ...

    def energy_uj(self) -> dict[str, int]:
        """Return each domain's counter in microjoules (monotonic modulo `wrap_uj`)."""
        ...

    def wrap_uj(self) -> dict[str, int]:
        """Return each domain's counter range in microjoules; 0 if it never wraps."""
        ...

    def uncertainty_j(self, energy_j: float, duration_s: float) -> float:
        """Return the error bound in joules of a window that read `energy_j` over `duration_s`."""
        ...


def gpu_domain(index: int) -> str:
    """Return the domain name of GPU `index`."""
    return f"gpu:{index}"


class PowerSampler:
    """Integrates a GPU's power readings over time, for GPUs without an energy counter.

    Samples are taken by `poll()`, which a background thread calls every `period_s` when started
    with `start()`; tests on a simulated clock call `poll()` themselves as the clock advances.
    """

    def __init__(self, device: GpuDevice, clock: Clock, period_s: float = 0.02) -> None:
        self.device = device
        self.clock = clock
        self.period_s = period_s
        self._samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Take one sample (time in s, power in W)."""
        t_s = self.clock()
        power_w = mw_to_w(self.device.power_mw())
        with self._lock:
            self._samples.append((t_s, power_w))

    def start(self) -> None:
        """Start the sampling thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="llm-energy-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampling thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.period_s + 1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except MeterError:  # a failed reading leaves a gap; the window integral bridges it
                logger.warning("power sample failed on gpu:%d", self.device.index, exc_info=True)
            self._stop.wait(self.period_s)

    def integral_j(self, t0_s: float, t1_s: float) -> tuple[float, float]:
        """Return (energy in J, max power in W) over [t0_s, t1_s] by trapezoidal integration.

        The power curve is linearly interpolated between samples and held flat past the first and
        last sample. Samples older than the window's start are pruned only by `forget_before`.
        """
        with self._lock:
            samples = list(self._samples)
        if not samples:
            raise MeterError(f"no power samples for gpu:{self.device.index}")

        def power_at(t_s: float) -> float:
            if t_s <= samples[0][0]:
                return samples[0][1]
            if t_s >= samples[-1][0]:
                return samples[-1][1]
            for (ta, pa), (tb, pb) in zip(samples, samples[1:], strict=False):
                if ta <= t_s <= tb:
                    return pa if tb == ta else pa + (pb - pa) * (t_s - ta) / (tb - ta)
            return samples[-1][1]  # unreachable: the window lies within the samples

        points = [(t0_s, power_at(t0_s))]
        points += [(t, p) for t, p in samples if t0_s < t < t1_s]
        points.append((t1_s, power_at(t1_s)))
        energy_j = sum(
            (tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in zip(points, points[1:], strict=False)
        )
        return energy_j, max(p for _, p in points)

    def forget_before(self, t_s: float) -> None:
        """Drop samples older than `t_s` (keeping one before it for interpolation)."""
        with self._lock:
            keep = [i for i, (ts, _) in enumerate(self._samples) if ts >= t_s]
            first = max(0, keep[0] - 1) if keep else max(0, len(self._samples) - 1)
            del self._samples[:first]


@dataclass
class _Begin:
    t_s: float
    gpu_energy_mj: dict[int, int]
    gpu_power_w: dict[int, float]
    cpu_energy_uj: list[dict[str, int]]


@dataclass
class WindowHandle:
    """Handle yielded by `EnergyMeter.window`; `result` is set when the window closes normally."""

    name: str
    result: Measurement | None = field(default=None)

    @property
    def measurement(self) -> Measurement:
        """The closed window's measurement.

        Raises:
            MeterError: the window has not closed (or closed through an exception).
        """
        if self.result is None:
            raise MeterError(f"window {self.name!r} has no result")
        return self.result


class EnergyMeter:
    """Measures energy of named, possibly overlapping windows on GPUs and CPUs.

    Args:
        gpus: GPU devices. A GPU without an energy counter is measured by sampling its power.
        cpus: CPU devices (RAPL, or an estimate labelled `estimated`).
        clock: Monotonic clock in seconds; shared with simulated devices in tests.
        sync: Called at both edges of every window (e.g. `torch.cuda.synchronize`).
        idle_power_w: Idle power per domain in watts, if already known.
        sampler_period_s: Power sampling period for counter-less GPUs. Sampling faster than the
            device's update period adds no information and, in a Python thread, steals the GIL from
            launch-bound engines (a 20 ms sampler slowed eager decode on the H100 host).
        start_samplers: Start sampling threads (False in tests that call `poll()` themselves).
        min_window_periods: Windows shorter than this many update periods are flagged.
    """

    def __init__(
        self,
        gpus: Sequence[GpuDevice] = (),
        cpus: Sequence[CpuDevice] = (),
        *,
        clock: Clock = time.monotonic,
        sync: Callable[[], None] | None = None,
        idle_power_w: Mapping[str, float] | None = None,
        sampler_period_s: float = 0.05,
        start_samplers: bool = True,
        min_window_periods: int = MIN_WINDOW_PERIODS,
    ) -> None:
        self.gpus = list(gpus)
        self.cpus = list(cpus)
        self.clock = clock
        self.sync = sync
        self.idle_power_w: dict[str, float] = dict(idle_power_w or {})
        self.min_window_periods = min_window_periods
        self._open: dict[str, _Begin] = {}
        self.samplers: dict[int, PowerSampler] = {}
        for gpu in self.gpus:
            try:
                gpu.total_energy_mj()
            except CounterUnavailable:
                logger.info(
                    "gpu:%d has no energy counter; sampling power every %.3f s", gpu.index, sampler_period_s
                )
                self.samplers[gpu.index] = PowerSampler(gpu, clock, sampler_period_s)
        for sampler in self.samplers.values():
            sampler.poll()
            if start_samplers:
                sampler.start()

    @property
    def domains(self) -> list[str]:
        """All domains this meter reports."""
        return [gpu_domain(g.index) for g in self.gpus] + [d for c in self.cpus for d in c.domains()]

    def poll(self) -> None:
        """Take one power sample on every sampled GPU (for tests driving a simulated clock)."""
        for sampler in self.samplers.values():
            sampler.poll()

    def _sync(self) -> None:
        if self.sync is not None:
            self.sync()

    def begin_window(self, name: str) -> None:
        """Open window `name`.

        Raises:
            MeterError: a window of that name is already open, or a reading failed.
        """
        if name in self._open:
            raise MeterError(f"window {name!r} is already open")
        self._sync()
        energy_mj: dict[int, int] = {}
        power_w: dict[int, float] = {}
        for gpu in self.gpus:
            if gpu.index in self.samplers:
                self.samplers[gpu.index].poll()
            else:
                energy_mj[gpu.index] = gpu.total_energy_mj()
            power_w[gpu.index] = mw_to_w(gpu.power_mw())
        cpu_uj = [cpu.energy_uj() for cpu in self.cpus]
        self._open[name] = _Begin(self.clock(), energy_mj, power_w, cpu_uj)

    def end_window(self, name: str, *, warn_short: bool = True) -> Measurement:
        """Close window `name` and return its measurement.

        Args:
            name: The window.
            warn_short: Warn (`MeasurementWarning`) when it is flagged `short-window`; callers that
                sum consecutive windows (`serving.WindowRecorder`) judge the sum instead.

        Raises:
            MeterError: no window of that name is open, or a reading failed.
        """
        begin = self._open.pop(name, None)
        if begin is None:
            raise MeterError(f"window {name!r} is not open")
        self._sync()
        t1_s = self.clock()
        duration_s = max(t1_s - begin.t_s, 0.0)
        energy_j: dict[str, float] = {}
        uncertainty_j: dict[str, float] = {}
        source: dict[str, Source] = {}
        flags: list[str] = []
        for gpu in self.gpus:
            domain = gpu_domain(gpu.index)
            period_s = gpu.update_period_s
            if duration_s < self.min_window_periods * period_s:
                flags.append(f"short-window:{domain}")
            sampler = self.samplers.get(gpu.index)
            if sampler is not None:
                sampler.poll()
                e_j, max_power_w = sampler.integral_j(begin.t_s, t1_s)
                energy_j[domain] = e_j
                # Readings are averages over the last update period, so the sampled curve lags the
                # true one by up to a period at each edge; bound both edges plus one sample gap.
                uncertainty_j[domain] = (2 * period_s + sampler.period_s) * max_power_w
                source[domain] = "measured"
                # Keep only samples that a still-open (overlapping) window may need.
                sampler.forget_before(min((b.t_s for b in self._open.values()), default=t1_s))
                continue
            e1_mj = gpu.total_energy_mj()
            p1_w = mw_to_w(gpu.power_mw())
            delta_mj = e1_mj - begin.gpu_energy_mj[gpu.index]
            if delta_mj < 0:
                flags.append(f"counter-reset:{domain}")
                warnings.warn(
                    f"{domain}: energy counter went backwards in window {name!r}; energy omitted",
                    MeasurementWarning,
                    stacklevel=2,
                )
                continue
            e_j = mj_to_j(delta_mj)
            mean_w = e_j / duration_s if duration_s > 0 else 0.0
            # Each edge misses at most one update period of energy at the power around that edge;
            # the two errors have opposite signs, so the bound is one period at the larger power.
            edge_w = max(begin.gpu_power_w[gpu.index], p1_w, mean_w)
            energy_j[domain] = e_j
            uncertainty_j[domain] = period_s * edge_w + 2 * COUNTER_QUANTUM_J
            source[domain] = "measured"
        for cpu, start in zip(self.cpus, begin.cpu_energy_uj, strict=True):
            now = cpu.energy_uj()
            wraps = cpu.wrap_uj()
            for domain in cpu.domains():
                delta_uj = now[domain] - start[domain]
                if delta_uj < 0:
                    if wraps.get(domain, 0) > 0:
                        delta_uj += wraps[domain]  # RAPL counters wrap at max_energy_range_uj
                    else:
                        flags.append(f"counter-reset:{domain}")
                        continue
                e_j = uj_to_j(delta_uj)
                energy_j[domain] = e_j
                uncertainty_j[domain] = cpu.uncertainty_j(e_j, duration_s)
                source[domain] = cpu.source
                if cpu.source != "measured":
                    flags.append(f"{cpu.source}:{domain}")
        short = [f for f in flags if f.startswith("short-window")]
        if short and warn_short:
            warnings.warn(
                f"window {name!r} lasted {duration_s:.3f} s, under {self.min_window_periods} counter update "
                "periods: repeat the phase inside the window to shrink the relative uncertainty",
                MeasurementWarning,
                stacklevel=2,
            )
        return Measurement(
            duration_s=duration_s,
            energy_j=energy_j,
            uncertainty_j=uncertainty_j,
            source=source,
            idle_power_w={d: p for d, p in self.idle_power_w.items() if d in energy_j},
            flags=tuple(flags),
        )

    def cancel_window(self, name: str) -> None:
        """Forget window `name` without measuring it (used when the workload raised)."""
        self._open.pop(name, None)

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[WindowHandle]:
        """Measure the body of a `with` block as window `name`.

        The workload's exception propagates unchanged; the window is then discarded.
        """
        handle = WindowHandle(name)
        self.begin_window(name)
        ok = False
        try:
            yield handle
            ok = True
        finally:
            if ok:
                handle.result = self.end_window(name)
            else:
                self.cancel_window(name)

    def measure_idle(
        self, duration_s: float = 3.0, sleep: Callable[[float], None] = time.sleep
    ) -> Measurement:
        """Measure idle power over `duration_s` and remember it for later windows.

        Returns:
            The idle window's measurement; `idle_power_w` is set from it for every domain.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeasurementWarning)
            with self.window("idle") as w:
                sleep(duration_s)
        m = w.measurement
        self.idle_power_w = {d: e / m.duration_s for d, e in m.energy_j.items()} if m.duration_s > 0 else {}
        return Measurement(
            duration_s=m.duration_s,
            energy_j=m.energy_j,
            uncertainty_j=m.uncertainty_j,
            source=m.source,
            idle_power_w=dict(self.idle_power_w),
            flags=m.flags,
        )

    def close(self) -> None:
        """Stop sampling threads. The meter can not be used afterwards."""
        for sampler in self.samplers.values():
            sampler.stop()
        self._open.clear()

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure_update_period_s(
    device: GpuDevice,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    *,
    max_wait_s: float = 1.5,
    poll_s: float = 0.002,
) -> float | None:
    """Estimate how often `device`'s energy counter refreshes, in seconds.

    Polls the counter and returns the median interval between observed changes, or None when fewer
    than three changes were seen within `max_wait_s` (e.g. an idle GPU whose counter barely moves).
    """
    changes: list[float] = []
    last = device.total_energy_mj()
    t_end = clock() + max_wait_s
    while clock() < t_end and len(changes) < 6:
        sleep(poll_s)
        now = device.total_energy_mj()
        if now != last:
            changes.append(clock())
            last = now
    if len(changes) < 3:
        return None
    gaps = sorted(b - a for a, b in zip(changes, changes[1:], strict=False))
    return gaps[len(gaps) // 2]

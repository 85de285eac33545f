"""Simulated energy devices that model the physics, shipped in the package (like httpx's MockTransport).

Tests, docs examples and the GPU-less demo (`--device simulated`) drive the real meter code through
these. `SimulatedGpu` reproduces NVML's semantics as seen on the H100 we test on: the energy counter
is an integer number of millijoules that refreshes only every `update_period_s` (~0.1 s), and the
power reading is the mean power over the last completed update period. `SimulatedRapl` writes a
`/sys/class/powercap`-shaped tree into a directory so the real `RaplCpu` reads it.

`SimulatedGpu` also has the settable side of a GPU (`llm_energy.control.SettableGpu`): H100-like
supported SM clocks and power-limit range, locked clocks and a power limit that can be set and reset,
and one-shot faults for those setters, so the restore-always logic is tested without a real GPU.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from llm_energy.errors import CounterUnavailable, GpuSettingsError, MeterError
from llm_energy.meters.registry import MeterBackend
from llm_energy.units import j_to_mj, w_to_mw

Fault = Literal["unavailable", "reset", "lost"]
SettingFault = Literal["set", "restore"]

H100_SM_CLOCKS_MHZ: tuple[int, ...] = tuple(range(345, 1981, 15))
"""Supported SM clocks of the simulated GPU: 345 to 1980 MHz in 15 MHz steps, like the H100 SXM."""

H100_POWER_LIMIT_RANGE_W: tuple[float, float] = (200.0, 700.0)
"""Power-limit range of the simulated GPU (the H100 SXM's NVML constraints)."""


class SimClock:
    """A manual clock in seconds. `advance` moves it in steps of at most `step_s` and calls listeners.

    Listeners (e.g. `EnergyMeter.poll` for power sampling) run after every step, which stands in
    for a background thread polling in real time.
    """

    def __init__(self, start_s: float = 0.0, *, step_s: float = 0.01) -> None:
        self.now_s = start_s
        self.step_s = step_s
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        """Return the current time in seconds."""
        return self.now_s

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each step of every `advance`."""
        self._listeners.append(listener)

    def advance(self, dt_s: float) -> None:
        """Move the clock forward by `dt_s` seconds (also usable as an injected `sleep`)."""
        if dt_s < 0:
            raise ValueError("a clock can not go backwards")
        end_s = self.now_s + dt_s
        while self.now_s < end_s:
            self.now_s = min(end_s, self.now_s + self.step_s) if self._listeners else end_s
            for listener in self._listeners:
                listener()


class PowerTrace:
    """Piecewise-constant power over time: `steps` of (start time in s, power in W)."""

    def __init__(self, steps: list[tuple[float, float]] | None = None, *, initial_w: float = 0.0) -> None:
        self.times_s: list[float] = [-math.inf]
        self.powers_w: list[float] = [initial_w]
        for t_s, p_w in sorted(steps or []):
            self.set(t_s, p_w)

    @classmethod
    def constant(cls, power_w: float) -> PowerTrace:
        """Return a trace at `power_w` watts forever."""
        return cls(initial_w=power_w)

    def set(self, t_s: float, power_w: float) -> None:
        """Power is `power_w` from `t_s` on (later steps are dropped)."""
        i = bisect.bisect_left(self.times_s, t_s)
        del self.times_s[i:], self.powers_w[i:]
        self.times_s.append(t_s)
        self.powers_w.append(power_w)

    def power_w(self, t_s: float) -> float:
        """Return the power in watts at time `t_s`."""
        return self.powers_w[bisect.bisect_right(self.times_s, t_s) - 1]

    def energy_j(self, t0_s: float, t1_s: float) -> float:
        """Return the exact integral of power over [t0_s, t1_s] in joules."""
        if t1_s <= t0_s:
            return 0.0
        total = 0.0
        i = bisect.bisect_right(self.times_s, t0_s) - 1
        t = t0_s
        while t < t1_s:
            nxt = self.times_s[i + 1] if i + 1 < len(self.times_s) else math.inf
            seg_end = min(nxt, t1_s)
            total += self.powers_w[i] * (seg_end - t)
            t = seg_end
            i += 1
        return total


class SimulatedGpu:
    """A GPU with NVML's counter semantics, driven by a `PowerTrace` and a shared clock.

    Args:
        clock: The shared clock.
        trace: Power over time; `set_power_w` appends steps to it.
        index: Device index (`gpu:<index>`).
        update_period_s: Counter/power refresh period (~0.1 s on the lent H100).
        update_offset_s: Phase of the update grid: updates happen at offset + k x period.
        has_energy_counter: False makes `total_energy_mj` raise `CounterUnavailable`.
        counter_start_mj: Counter value at time 0 (real counters start far from zero).
        name: Reported device name.
        power_limit_w: Current power limit (what `set_power_limit_w` changes).
        default_power_limit_w: Power limit that `reset_power_limit` returns to (default: `power_limit_w`).
        supported_sm_clocks_mhz: SM clocks that can be locked (default: `H100_SM_CLOCKS_MHZ`).
        power_limit_range_w: (min, max) settable power limit in watts.
        locked_sm_clocks_mhz: (min, max) locked SM clocks at start, None when unlocked.
        settings_privilege: False makes every setter fail as NVML does without root/SYS_ADMIN.
    """

    def __init__(
        self,
        clock: SimClock,
        trace: PowerTrace | None = None,
        *,
        index: int = 0,
        update_period_s: float = 0.1,
        update_offset_s: float = 0.0,
        has_energy_counter: bool = True,
        counter_start_mj: int = 5_000_000,
        name: str = "Simulated H100",
        power_limit_w: float = 700.0,
        default_power_limit_w: float | None = None,
        supported_sm_clocks_mhz: Sequence[int] = H100_SM_CLOCKS_MHZ,
        power_limit_range_w: tuple[float, float] = H100_POWER_LIMIT_RANGE_W,
        locked_sm_clocks_mhz: tuple[int, int] | None = None,
        settings_privilege: bool = True,
    ) -> None:
        self.clock = clock
        self.trace = trace if trace is not None else PowerTrace.constant(70.0)
        self._index = index
        self._update_period_s = update_period_s
        self.update_offset_s = update_offset_s
        self.has_energy_counter = has_energy_counter
        self.counter_start_mj = counter_start_mj
        self.name = name
        self.power_limit_w = power_limit_w
        self._reset_at_s: float | None = None
        self._pending: Fault | None = None
        self._lost = False
        self.default_power_limit_w = power_limit_w if default_power_limit_w is None else default_power_limit_w
        self._supported_sm_clocks_mhz = sorted(supported_sm_clocks_mhz)
        self._power_limit_range_w = power_limit_range_w
        self.locked_sm_clocks_mhz = locked_sm_clocks_mhz
        self.settings_privilege = settings_privilege
        self._setting_faults: dict[SettingFault, int] = {}
        self._before_change: dict[str, Any] = {}

    @property
    def index(self) -> int:
        """Device index."""
        return self._index

    @property
    def update_period_s(self) -> float:
        """Counter refresh period in seconds."""
        return self._update_period_s

    def _last_update_s(self) -> float:
        k = math.floor((self.clock() - self.update_offset_s) / self._update_period_s)
        return self.update_offset_s + k * self._update_period_s

    def _check_faults(self) -> None:
        if self._lost:
            raise MeterError(f"gpu:{self.index} is lost (simulated)")
        if self._pending == "unavailable":
            self._pending = None
            raise CounterUnavailable(f"gpu:{self.index} energy counter unavailable (simulated)")

    def true_energy_j(self, t0_s: float, t1_s: float) -> float:
        """Return the exact energy between two times (the ground truth tests compare with)."""
        return self.trace.energy_j(t0_s, t1_s)

    def total_energy_mj(self) -> int:
        """Return the integer-millijoule counter as of the last update boundary."""
        if not self.has_energy_counter:
            raise CounterUnavailable(f"gpu:{self.index} has no energy counter (simulated)")
        self._check_faults()
        u_s = self._last_update_s()
        if self._reset_at_s is not None and u_s >= self._reset_at_s:
            return math.floor(j_to_mj(self.trace.energy_j(self._reset_at_s, u_s)))
        return self.counter_start_mj + math.floor(j_to_mj(self.trace.energy_j(0.0, u_s)))

    def power_mw(self) -> int:
        """Return the mean power over the last completed update period, in integer milliwatts."""
        self._check_faults()
        u_s = self._last_update_s()
        mean_w = self.trace.energy_j(u_s - self._update_period_s, u_s) / self._update_period_s
        return round(w_to_mw(mean_w))

    def set_power_w(self, power_w: float) -> None:
        """Power becomes `power_w` watts from now on (driven by the simulated engine)."""
        self.trace.set(self.clock(), power_w)

    def inject(self, fault: Fault) -> None:
        """Inject a fault.

        `unavailable`: the next counter read fails once; `reset`: the counter restarts from zero now;
        `lost`: every read fails from now on.
        """
        if fault == "reset":
            self._reset_at_s = self.clock()
        elif fault == "lost":
            self._lost = True
        else:
            self._pending = fault

    # --- settable side (llm_energy.control.SettableGpu) -------------------------------------------

    def uuid(self) -> str:
        """Return a stable identifier of the simulated device."""
        return f"GPU-simulated-{self._index}"

    def has_settings_privilege(self) -> bool:
        """Return whether settings may be changed (root / SYS_ADMIN on a real GPU)."""
        return self.settings_privilege

    def supported_sm_clocks_mhz(self) -> list[int]:
        """Return the SM clocks that can be locked, ascending, in MHz."""
        return list(self._supported_sm_clocks_mhz)

    def power_limit_range_w(self) -> tuple[float, float]:
        """Return the (min, max) settable power limit in watts."""
        return self._power_limit_range_w

    def current_locked_sm_clocks_mhz(self) -> tuple[int, int] | None:
        """Return the locked (min, max) SM clocks in MHz, None when unlocked."""
        return self.locked_sm_clocks_mhz

    def current_power_limit_w(self) -> float:
        """Return the current power limit in watts."""
        return self.power_limit_w

    def inject_setting_fault(self, fault: SettingFault, *, after: int = 0) -> None:
        """Make one settings call fail with `GpuSettingsError`, changing nothing.

        `set`: the next call that changes a setting away from its value before the change fails.
        `restore`: the next call that undoes a change fails: any reset, or a set back to the value the
        setting had before it was first changed. `after` lets that many such calls succeed first.
        """
        self._setting_faults[fault] = after

    def _change(self, key: str, new: Any, *, reset: bool) -> None:
        """Apply a settings change: privilege, fault injection and change tracking."""
        if not self.settings_privilege:
            raise GpuSettingsError(f"gpu:{self.index}: no privilege to change GPU settings (simulated)")
        current = getattr(self, key)
        is_restore = reset or (key in self._before_change and new == self._before_change[key])
        kind: SettingFault = "restore" if is_restore else "set"
        if kind in self._setting_faults:
            if self._setting_faults[kind] == 0:
                del self._setting_faults[kind]
                raise GpuSettingsError(f"gpu:{self.index}: {kind} of {key} failed (simulated fault)")
            self._setting_faults[kind] -= 1
        if is_restore:
            self._before_change.pop(key, None)
        elif new != current:
            self._before_change.setdefault(key, current)
        setattr(self, key, new)

    def set_locked_sm_clock_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock to [min_mhz, max_mhz]; both must be supported clocks.

        Raises:
            GpuSettingsError: unsupported clock, no privilege or an injected fault (NVML's errors).
        """
        for clock_mhz in (min_mhz, max_mhz):
            if clock_mhz not in self._supported_sm_clocks_mhz:
                raise GpuSettingsError(f"gpu:{self.index}: {clock_mhz} MHz is not a supported SM clock")
        if min_mhz > max_mhz:
            raise GpuSettingsError(f"gpu:{self.index}: min clock {min_mhz} MHz > max clock {max_mhz} MHz")
        self._change("locked_sm_clocks_mhz", (min_mhz, max_mhz), reset=False)

    def reset_locked_sm_clocks(self) -> None:
        """Unlock the SM clocks (`nvidia-smi -rgc`)."""
        self._change("locked_sm_clocks_mhz", None, reset=True)

    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Set the power limit in watts, inside `power_limit_range_w()`.

        Raises:
            GpuSettingsError: out of range, no privilege or an injected fault (NVML's errors).
        """
        low_w, high_w = self._power_limit_range_w
        if not low_w <= power_limit_w <= high_w:
            raise GpuSettingsError(f"gpu:{self.index}: power limit {power_limit_w} W is out of range")
        self._change("power_limit_w", float(power_limit_w), reset=False)

    def reset_power_limit(self) -> None:
        """Return the power limit to its default."""
        self._change("power_limit_w", self.default_power_limit_w, reset=True)

    def info(self) -> dict[str, Any]:
        """Return the simulated device's facts."""
        return {
            "name": self.name,
            "power_limit_w": self.power_limit_w,
            "update_period_s": self._update_period_s,
            "energy_counter": self.has_energy_counter,
            "driver": "simulated",
        }


class WallClock(SimClock):
    """A `SimClock` that reads a real clock (`now`): a simulated GPU metered while real code runs."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self._now = now

    def __call__(self) -> float:
        """Return the real clock's time in seconds."""
        return self._now()


def constant_gpu_on(now: Callable[[], float], power_w: float = 300.0) -> tuple[SimulatedGpu, WallClock]:
    """A simulated GPU drawing `power_w` on the real clock `now`, and that clock (CPU smoke runs)."""
    clock = WallClock(now)
    return SimulatedGpu(clock, PowerTrace.constant(power_w), update_period_s=0.001, counter_start_mj=0), clock


class SimulatedRapl:
    """Writes and updates a powercap tree (`intel-rapl:<i>/energy_uj`, a `dram` subzone) in `root`.

    The real `RaplCpu(root=...)` reads it. Counters wrap at `max_energy_range_uj` like real RAPL.
    """

    def __init__(
        self,
        root: Path,
        *,
        packages: int = 1,
        with_dram: bool = True,
        max_energy_range_uj: int = 262_143_328_850,
        start_uj: int = 1_000_000,
    ) -> None:
        self.root = Path(root)
        self.max_energy_range_uj = max_energy_range_uj
        self.zones: dict[str, Path] = {}
        for pkg in range(packages):
            zone = self.root / f"intel-rapl:{pkg}"
            self._write_zone(zone, f"package-{pkg}", start_uj)
            self.zones[f"cpu:{pkg}"] = zone
            if with_dram:
                sub = zone / f"intel-rapl:{pkg}:0"
                self._write_zone(sub, "dram", start_uj)
                self.zones[f"dram:{pkg}"] = sub

    def _write_zone(self, zone: Path, name: str, start_uj: int) -> None:
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text(f"{start_uj}\n")
        (zone / "max_energy_range_uj").write_text(f"{self.max_energy_range_uj}\n")

    def add_energy_j(self, domain: str, energy_j: float) -> None:
        """Add `energy_j` joules to `domain`'s counter, wrapping like the hardware."""
        path = self.zones[domain] / "energy_uj"
        value = int(path.read_text()) + round(energy_j * 1e6)
        path.write_text(f"{value % self.max_energy_range_uj}\n")


def detect_simulated_gpu(**_options: Any) -> tuple[list[SimulatedGpu], list[str]]:
    """Return one simulated GPU on its own clock, idle at 70 W (never tried by detection)."""
    return [SimulatedGpu(SimClock(), PowerTrace.constant(70.0))], ["gpu:0 is simulated"]


BACKEND = MeterBackend("simulated", "gpu", detect_simulated_gpu, auto=False)
"""Simulated devices: made by hand (tests, the simulated engine), never detected."""

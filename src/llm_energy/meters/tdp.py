"""CPU energy estimated as TDP x utilisation, for machines without a readable energy sensor.

This is an estimate, not a measurement: it is labelled `estimated` in every measurement, flagged,
and never added to measured figures. The default TDP (85 W) is the fallback CodeCarbon uses when a
CPU's TDP is unknown; pass the real one (`--cpu-tdp-w`, or `LLM_ENERGY_CPU_TDP_W`) where known.
Utilisation is the busy fraction of all cores from /proc/stat between two readings.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.meters.registry import MeterBackend
from llm_energy.records import Source

DEFAULT_TDP_W = 85.0
RELATIVE_UNCERTAINTY = 0.5
"""TDP x utilisation is crude: we state +/-50% of the estimate (at least 1 J)."""


def tdp_setting_w(tdp_w: float | None = None) -> float:
    """Return the TDP to estimate with: `tdp_w`, else `LLM_ENERGY_CPU_TDP_W`, else `DEFAULT_TDP_W`.

    Raises:
        ConfigError: the value (or the variable) is not a finite number of watts > 0.
    """
    what, value = "--cpu-tdp-w", tdp_w
    if value is None:
        env_tdp = os.environ.get("LLM_ENERGY_CPU_TDP_W")
        if not env_tdp:
            return DEFAULT_TDP_W
        what = "LLM_ENERGY_CPU_TDP_W"
        try:
            value = float(env_tdp)
        except ValueError:
            raise ConfigError(f"{what} must be a number of watts > 0, got {env_tdp!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{what} must be a finite number of watts > 0, got {value!r}")
    return value


def read_proc_stat(path: Path = Path("/proc/stat")) -> tuple[int, int]:
    """Return (busy, total) jiffies over all CPUs from a /proc/stat-shaped file."""
    fields = path.read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return total - idle, total


class TdpCpu:
    """Estimated CPU energy exposed as a monotonic microjoule counter (`cpu:0`, all sockets).

    Args:
        tdp_w: Thermal design power in watts of all sockets together.
        clock: Monotonic clock in seconds.
        stat_reader: Returns (busy, total) CPU time counters; injectable for tests.

    Raises:
        ConfigError: a TDP (given or from `LLM_ENERGY_CPU_TDP_W`) that is not a number of watts > 0.
    """

    source: Source = "estimated"

    def __init__(
        self,
        tdp_w: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        stat_reader: Callable[[], tuple[int, int]] = read_proc_stat,
    ) -> None:
        self.tdp_w = tdp_setting_w(tdp_w)
        self.clock = clock
        self.stat_reader = stat_reader
        self._lock = threading.Lock()
        self._energy_uj = 0.0
        self._last = (clock(), *stat_reader())

    def domains(self) -> list[str]:
        """Return `["cpu:0"]`: one estimate for the whole host."""
        return ["cpu:0"]

    def energy_uj(self) -> dict[str, int]:
        """Advance the estimate to now and return it in microjoules."""
        with self._lock:
            t_s, busy, total = self.clock(), *self.stat_reader()
            t0_s, busy0, total0 = self._last
            util = (busy - busy0) / (total - total0) if total > total0 else 0.0
            self._energy_uj += self.tdp_w * min(max(util, 0.0), 1.0) * (t_s - t0_s) * 1e6
            self._last = (t_s, busy, total)
            return {"cpu:0": round(self._energy_uj)}

    def wrap_uj(self) -> dict[str, int]:
        """The estimate never wraps."""
        return {"cpu:0": 0}

    def uncertainty_j(self, energy_j: float, duration_s: float) -> float:
        """Return +/-50% of the estimate, at least 1 J."""
        return max(RELATIVE_UNCERTAINTY * energy_j, 1.0)


def detect_tdp(*, tdp_w: float | None = None, **_options: Any) -> tuple[list[TdpCpu], list[str]]:
    """Return the TDP x utilisation estimate of the CPU (always available), labelled as such."""
    cpu = TdpCpu(tdp_w)
    return [cpu], [f"CPU energy is ESTIMATED as TDP ({cpu.tdp_w:.0f} W) x utilisation"]


BACKEND = MeterBackend("tdp", "cpu", detect_tdp, fallback=True)
"""The CPU estimate where no counter is readable (a fallback: tried after every measuring backend)."""

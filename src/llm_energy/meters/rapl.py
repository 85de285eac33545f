"""CPU package and DRAM energy from Linux RAPL counters under /sys/class/powercap.

Zones `intel-rapl:<i>` are CPU packages (`cpu:<i>`); a subzone named `dram` becomes `dram:<i>`.
Core/uncore subzones are part of the package figure and are not reported again. The root is
injectable so tests read a tree written by `SimulatedRapl`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llm_energy.errors import CounterUnavailable, MeterError
from llm_energy.meters.registry import MeterBackend
from llm_energy.records import Source

logger = logging.getLogger(__name__)

POWERCAP_ROOT = Path("/sys/class/powercap")

RAPL_QUANTUM_J = 1e-6 * 61
"""Typical RAPL energy unit (~61 uJ); each reading is truncated by up to this much."""


class RaplCpu:
    """Reads RAPL package and DRAM counters (microjoules) for every CPU package found.

    Raises:
        CounterUnavailable: no readable RAPL zone exists under `root` (e.g. not root, no RAPL).
    """

    source: Source = "measured"

    def __init__(self, root: Path | str = POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self._files: dict[str, Path] = {}
        self._wrap: dict[str, int] = {}
        for zone in sorted(self.root.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:
                continue
            pkg = zone.name.split(":")[1]
            self._add(f"cpu:{pkg}", zone)
            for sub in sorted(zone.glob(f"intel-rapl:{pkg}:*")):
                if _read_text(sub / "name") == "dram":
                    self._add(f"dram:{pkg}", sub)
        if not self._files:
            raise CounterUnavailable(f"no readable RAPL energy counters under {self.root}")

    def _add(self, domain: str, zone: Path) -> None:
        try:
            int((zone / "energy_uj").read_text())
            wrap = int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError) as exc:
            logger.info("RAPL zone %s not readable: %s", zone, exc)
            return
        self._files[domain] = zone / "energy_uj"
        self._wrap[domain] = wrap

    def domains(self) -> list[str]:
        """Return the domains found, e.g. `["cpu:0", "dram:0"]`."""
        return list(self._files)

    def energy_uj(self) -> dict[str, int]:
        """Return each domain's counter in microjoules.

        Raises:
            MeterError: a counter file could not be read.
        """
        try:
            return {d: int(p.read_text()) for d, p in self._files.items()}
        except (OSError, ValueError) as exc:
            raise MeterError(f"RAPL read failed: {exc}") from exc

    def wrap_uj(self) -> dict[str, int]:
        """Return each counter's range in microjoules (it wraps to zero there)."""
        return dict(self._wrap)

    def uncertainty_j(self, energy_j: float, duration_s: float) -> float:
        """RAPL updates every ~1 ms: the error is two readings' quantisation."""
        return 2 * RAPL_QUANTUM_J


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def detect_rapl(*, rapl_root: Path | str = POWERCAP_ROOT, **_options: Any) -> tuple[list[RaplCpu], list[str]]:
    """Return the RAPL counters under `rapl_root`, or none and why."""
    try:
        return [RaplCpu(rapl_root)], []
    except CounterUnavailable as exc:
        return [], [str(exc)]


BACKEND = MeterBackend("rapl", "cpu", detect_rapl)
"""CPU package and DRAM energy counters (`/sys/class/powercap`)."""

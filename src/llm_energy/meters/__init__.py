"""Energy meters: one `EnergyMeter` over injected GPU and CPU devices, plus device discovery.

Backends, one file each, registered by name in `METERS` (`registry.py`): `zeus` (NVIDIA/AMD GPUs
through Zeus's device layer), `rapl` (CPU package and DRAM counters), `tdp` (CPU estimate, labelled
`estimated`, the fallback), `simulated` (test devices, never detected). `detect_gpus` and
`detect_cpus` ask the backends of their kind in order; `register_meter` adds one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from llm_energy.meters import rapl, simulated, tdp, zeus
from llm_energy.meters.base import (
    Clock,
    CpuDevice,
    EnergyMeter,
    GpuDevice,
    PowerSampler,
    WindowHandle,
    measure_update_period_s,
)
from llm_energy.meters.rapl import POWERCAP_ROOT, RaplCpu
from llm_energy.meters.registry import METERS, MeterBackend, detect_devices_of, register_meter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu, SimulatedRapl
from llm_energy.meters.tdp import TdpCpu

logger = logging.getLogger(__name__)

for _backend in (zeus.BACKEND, rapl.BACKEND, tdp.BACKEND, simulated.BACKEND):
    register_meter(_backend, replace=True)  # the built-ins; a re-import registers the same again


@dataclass
class Devices:
    """What the meters can see on this machine, and notes on what they cannot."""

    gpus: list[GpuDevice] = field(default_factory=list)
    cpus: list[CpuDevice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detect_gpus(*, probe_update_period: bool = True) -> tuple[list[GpuDevice], list[str]]:
    """Return the GPUs the first GPU backend that sees any reads (empty without a GPU), and notes.

    Built in: Zeus (NVIDIA and AMD); registered backends are tried in their priority order.
    """
    return detect_devices_of("gpu", probe_update_period=probe_update_period)


def detect_cpus(
    *, rapl_root: Path | str = POWERCAP_ROOT, tdp_w: float | None = None
) -> tuple[list[CpuDevice], list[str]]:
    """Return RAPL counters when readable, else a TDP x utilisation estimate (labelled estimated).

    Registered CPU backends are tried in their priority order before the TDP fallback.
    """
    return detect_devices_of("cpu", rapl_root=rapl_root, tdp_w=tdp_w)


def detect_devices(
    *, gpus: bool = True, rapl_root: Path | str = POWERCAP_ROOT, tdp_w: float | None = None
) -> Devices:
    """Return every energy device the meters can read here (GPUs only if `gpus`)."""
    found = Devices()
    if gpus:
        found.gpus, notes = detect_gpus()
        found.notes += notes
    found.cpus, notes = detect_cpus(rapl_root=rapl_root, tdp_w=tdp_w)
    found.notes += notes
    return found


__all__ = [
    "METERS",
    "Clock",
    "CpuDevice",
    "Devices",
    "EnergyMeter",
    "GpuDevice",
    "MeterBackend",
    "PowerSampler",
    "PowerTrace",
    "RaplCpu",
    "SimClock",
    "SimulatedGpu",
    "SimulatedRapl",
    "TdpCpu",
    "WindowHandle",
    "detect_cpus",
    "detect_devices",
    "detect_gpus",
    "measure_update_period_s",
    "register_meter",
]

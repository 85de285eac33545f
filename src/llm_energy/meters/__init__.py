"""Energy meters: one `EnergyMeter` over injected GPU and CPU devices, plus device discovery.

Backends, one file each: `zeus` (NVIDIA/AMD GPUs through Zeus's device layer), `rapl` (CPU package
and DRAM counters), `tdp` (CPU estimate, labelled `estimated`), `simulated` (test devices).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from llm_energy.errors import CounterUnavailable, MeterError
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
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu, SimulatedRapl
from llm_energy.meters.tdp import TdpCpu

logger = logging.getLogger(__name__)


@dataclass
class Devices:
    """What the meters can see on this machine, and notes on what they cannot."""

    gpus: list[GpuDevice] = field(default_factory=list)
    cpus: list[CpuDevice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detect_gpus(*, probe_update_period: bool = True) -> tuple[list[GpuDevice], list[str]]:
    """Return the GPUs visible through Zeus (empty without a GPU) and notes on what happened."""
    from llm_energy.meters.zeus import ZeusGpu, zeus_gpu_count

    notes: list[str] = []
    try:
        count = zeus_gpu_count()
    except MeterError as exc:
        return [], [f"GPU management library failed: {exc}"]
    if count == 0:
        return [], ["no GPU visible to NVML/AMDSMI"]
    gpus: list[GpuDevice] = []
    for i in range(count):
        gpu = ZeusGpu(i)
        if probe_update_period:
            try:
                period_s = measure_update_period_s(gpu, max_wait_s=1.0)
            except CounterUnavailable:
                period_s = None
                notes.append(f"gpu:{i} has no energy counter: power will be sampled")
            if period_s is not None:
                gpu.update_period_s = period_s
        gpus.append(gpu)
    return gpus, notes


def detect_cpus(
    *, rapl_root: Path | str = POWERCAP_ROOT, tdp_w: float | None = None
) -> tuple[list[CpuDevice], list[str]]:
    """Return RAPL counters when readable, else a TDP x utilisation estimate (labelled estimated)."""
    try:
        return [RaplCpu(rapl_root)], []
    except CounterUnavailable as exc:
        cpu = TdpCpu(tdp_w)
        return [cpu], [f"{exc}: CPU energy is ESTIMATED as TDP ({cpu.tdp_w:.0f} W) x utilisation"]


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
    "Clock",
    "CpuDevice",
    "Devices",
    "EnergyMeter",
    "GpuDevice",
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
]

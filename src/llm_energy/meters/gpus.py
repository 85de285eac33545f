"""Published facts of GPU models, keyed by the device name NVML reports: one table for every consumer.

The roofline and FLOPs models read peak FLOP/s, memory bandwidth, board power and memory; the DVFS
model reads the maximum SM clock. A GPU that is not here is added with `register_gpu` (one row), not
in each model.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_energy.errors import ConfigError


@dataclass(frozen=True)
class GpuSpec:
    """Published figures of one GPU model (dense bf16 tensor-core FLOP/s, HBM bandwidth, board power).

    Attributes:
        name: The device name as NVML reports it (`NVIDIA H100 80GB HBM3`).
        peak_bf16_flops: Dense bf16 tensor-core peak, FLOP/s.
        memory_bandwidth_bps: HBM bandwidth, bytes/s.
        tdp_w: Board power limit, W.
        memory_bytes: Device memory as NVML reports it (0 when unknown).
        family: The short name other GPUs of the same chip share (`H100`: SXM and PCIe names
            contain it); the maximum SM clock is matched by it.
        max_sm_clock_mhz: Maximum (boost) SM clock, MHz; None when not known.
    """

    name: str
    peak_bf16_flops: float
    memory_bandwidth_bps: float
    tdp_w: float
    memory_bytes: float = 0.0
    family: str = ""
    max_sm_clock_mhz: float | None = None


GPU_SPECS: dict[str, GpuSpec] = {
    spec.name: spec
    for spec in (
        GpuSpec("NVIDIA H100 80GB HBM3", 989e12, 3.35e12, 700.0, 85_520_809_984, "H100", 1980.0),
        GpuSpec("NVIDIA H200", 989e12, 4.8e12, 700.0, 150_754_820_096, "H200", 1980.0),
        GpuSpec("NVIDIA A100-SXM4-80GB", 312e12, 2.039e12, 400.0, 85_899_345_920, "A100", 1410.0),
        GpuSpec("NVIDIA RTX A6000", 154.8e12, 0.768e12, 300.0, 51_527_024_640, "A6000"),
    )
}
"""Datasheet values (dense, no sparsity; SM clocks of the SXM parts). Measured ceilings are lower:
798 TFLOP/s bf16 GEMM and ~3.0 TB/s copy on the lent H100 (docs/results/foundation-h100.md)."""


def register_gpu(spec: GpuSpec) -> GpuSpec:
    """Add (or replace) the figures of GPU `spec.name`; return `spec`."""
    GPU_SPECS[spec.name] = spec
    return spec


def gpu_spec(name: str) -> GpuSpec:
    """Return the spec of GPU `name` (exact, or the first known name it starts with).

    Raises:
        ConfigError: unknown GPU; the message lists the known ones.
    """
    if name in GPU_SPECS:
        return GPU_SPECS[name]
    for known, spec in GPU_SPECS.items():
        if name.startswith(known) or known.startswith(name):
            return spec
    raise ConfigError(f"no published peaks for GPU {name!r}; known: {', '.join(GPU_SPECS)}")


def max_sm_clock_mhz(gpu_name: str) -> float:
    """Return the maximum SM clock of `gpu_name`, matched by its family (`H100` in any H100's name).

    Raises:
        ConfigError: a GPU whose maximum clock is not in the table (give it explicitly).
    """
    clocked = [spec for spec in GPU_SPECS.values() if spec.max_sm_clock_mhz is not None and spec.family]
    for spec in clocked:
        if spec.family.lower() in gpu_name.lower():
            assert spec.max_sm_clock_mhz is not None
            return spec.max_sm_clock_mhz
    raise ConfigError(
        f"no maximum SM clock known for GPU {gpu_name!r} (known: {', '.join(s.family for s in clocked)}); "
        "give it explicitly (--max-clock-mhz)"
    )

"""Rescale a fitted physical model to another GPU by the two GPUs' published peaks (`--target-gpu`).

No measurement of the target is used: each term's time scales with the peak that bounds it (GEMM and attention
with dense bf16 FLOP/s; KV reads, expert reads and the per-step/per-pass constants, which are dominated by
reading the weights, with memory bandwidth; the per-sequence cost with FLOP/s), and each term's power with the
board power (TDP). Idle power scales with TDP too, and the KV capacity is recomputed from the target's memory.
It is a prior, not a profile: its error against measurements is in docs/results/model-accuracy-h200.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from llm_energy.errors import ConfigError
from llm_energy.meters.gpus import GpuSpec, gpu_spec
from llm_energy.modeling.physical import Coefficients, PhysicalModel

if TYPE_CHECKING:
    from llm_energy.modeling.profile import EnergyProfile

_PREFILL_BOUND = ("bandwidth", "flops", "flops")
_DECODE_BOUND = ("bandwidth", "bandwidth", "flops", "bandwidth")


def _scale(c: Coefficients, bounds: tuple[str, ...], src: GpuSpec, dst: GpuSpec) -> Coefficients:
    speed = {
        "flops": src.peak_bf16_flops / dst.peak_bf16_flops,
        "bandwidth": src.memory_bandwidth_bps / dst.memory_bandwidth_bps,
    }
    power = dst.tdp_w / src.tdp_w
    t = tuple(x * speed[b] for x, b in zip(c.time_s, bounds, strict=True))
    e = tuple(x * speed[b] * power for x, b in zip(c.energy_j, bounds, strict=True))
    return Coefficients(t, e)


def transfer(
    model: PhysicalModel, src: GpuSpec, dst: GpuSpec, *, kv_capacity_tokens: float | None = None
) -> PhysicalModel:
    """`model` (fitted on `src`) predicted for `dst` from published figures alone."""
    return replace(
        model,
        prefill=_scale(model.prefill, _PREFILL_BOUND, src, dst),
        decode=_scale(model.decode, _DECODE_BOUND, src, dst),
        idle_power_w=model.idle_power_w * dst.tdp_w / src.tdp_w,
        kv_capacity_tokens=kv_capacity_tokens or model.kv_capacity_tokens,
    )


def transfer_profile(profile: EnergyProfile, target_gpu: str) -> EnergyProfile:
    """`profile` with its physical model rescaled to `target_gpu` (grid models are left as measured).

    Raises:
        ConfigError: no physical model, or no published figures for either GPU.
    """
    from llm_energy.modeling.fitting import kv_capacity_from_memory

    if profile.physical is None:
        raise ConfigError(f"profile {profile.describe()} has no physical model to rescale: refit it")
    src, dst = gpu_spec(profile.gpu_name), gpu_spec(target_gpu)
    m = profile.physical
    kv = (
        kv_capacity_from_memory(m.shape, dst.memory_bytes)
        if dst.memory_bytes and m.shape.weight_bytes
        else None
    )
    moved = transfer(m, src, dst, kv_capacity_tokens=kv)
    return replace(profile, physical=moved, gpu_name=f"{dst.name} (rescaled from {profile.gpu_name})")

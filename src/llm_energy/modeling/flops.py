"""The FLOPs baseline the seed study criticises, and the roofline time floor beside it.

`flops` estimates energy as (FLOPs / peak FLOP/s) × board power: the GPU is assumed to run at its
peak rate and its rated power for exactly the time the arithmetic needs. The common "× utilisation"
variant divides the peak by an assumed utilisation (e.g. 0.5). Both ignore memory-bound decode,
launch overhead and idle time, which is why they underestimate (docs/results/model-validation-h100.md).

`roofline_s` is the physics floor per phase: max(FLOPs / peak, bytes moved / memory bandwidth), so a
measured point can say how far it is from the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from llm_energy.architectures import Architecture, kv_cache_bytes, matmul_param_count, weight_bytes
from llm_energy.errors import ConfigError


@dataclass(frozen=True)
class GpuSpec:
    """Published peak figures of a GPU (dense bf16 tensor-core FLOP/s, HBM bandwidth, board power)."""

    name: str
    peak_bf16_flops: float
    memory_bandwidth_bps: float
    tdp_w: float
    memory_bytes: float = 0.0
    """Device memory as NVML reports it (0 when unknown)."""


GPU_SPECS: dict[str, GpuSpec] = {
    "NVIDIA H100 80GB HBM3": GpuSpec("NVIDIA H100 80GB HBM3", 989e12, 3.35e12, 700.0, 85_520_809_984),
    "NVIDIA H200": GpuSpec("NVIDIA H200", 989e12, 4.8e12, 700.0, 150_754_820_096),
    "NVIDIA A100-SXM4-80GB": GpuSpec("NVIDIA A100-SXM4-80GB", 312e12, 2.039e12, 400.0, 85_899_345_920),
    "NVIDIA RTX A6000": GpuSpec("NVIDIA RTX A6000", 154.8e12, 0.768e12, 300.0, 51_527_024_640),
}
"""Datasheet values (dense, no sparsity). Measured ceilings are lower: 798 TFLOP/s bf16 GEMM and
~3.0 TB/s copy on the lent H100 (docs/results/foundation-h100.md)."""


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


def _attention_coef(arch: Architecture) -> float:
    return 4.0 * arch.num_layers * arch.num_heads * arch.head_dim


def request_flops(
    arch: Architecture, input_tokens: np.ndarray, output_tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised prefill and decode FLOPs per request (same formulas as `architectures.counts`)."""
    n = np.asarray(input_tokens, float)
    s = np.maximum(np.asarray(output_tokens, float) - 1, 0)
    head = float(arch.vocab_size * arch.hidden_size)
    body = float(matmul_param_count(arch)) - head
    a = _attention_coef(arch)
    prefill = 2 * body * n + 2 * head + a * n * (n + 1) / 2
    decode = 2 * (body + head) * s + a * (s * n + s * (s + 1) / 2)
    return prefill, decode


class FlopsModel:
    """Energy = FLOPs / (peak FLOP/s × utilisation) × board power.

    Args:
        arch: The architecture.
        gpu: Its GPU's published peaks.
        utilisation: Assumed fraction of peak reached (1.0 = the naive estimate).
    """

    name: ClassVar[str] = "flops"

    def __init__(self, arch: Architecture, gpu: GpuSpec, *, utilisation: float = 1.0) -> None:
        if not 0 < utilisation <= 1:
            raise ConfigError(f"utilisation must be in (0, 1], got {utilisation}")
        self.arch = arch
        self.gpu = gpu
        self.utilisation = utilisation

    def estimate(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (prefill J, decode J) per request."""
        prefill, decode = request_flops(self.arch, input_tokens, output_tokens)
        j_per_flop = self.gpu.tdp_w / (self.gpu.peak_bf16_flops * self.utilisation)
        return prefill * j_per_flop, decode * j_per_flop


def roofline_s(
    arch: Architecture,
    gpu: GpuSpec,
    batch_size: int,
    input_tokens: int,
    output_tokens: int,
    *,
    bytes_per_param: float = 2.0,
) -> tuple[float, float]:
    """Return the floor (prefill seconds, decode seconds) of one batch: max(compute, memory) per phase.

    Prefill reads the weights once and writes the batch's KV cache; each decode step reads the
    weights and the whole KV cache so far and writes one token's KV per sequence.
    """
    prefill_f, decode_f = request_flops(arch, np.array([input_tokens]), np.array([output_tokens]))
    w = weight_bytes(arch, bytes_per_param)
    prefill_bytes = w + kv_cache_bytes(arch, batch_size, input_tokens)
    prefill_s = max(
        batch_size * float(prefill_f[0]) / gpu.peak_bf16_flops, prefill_bytes / gpu.memory_bandwidth_bps
    )
    steps = max(output_tokens - 1, 0)
    decode_s = 0.0
    if steps:
        mean_ctx = input_tokens + (steps + 1) / 2
        step_bytes = w + kv_cache_bytes(arch, batch_size, max(int(mean_ctx), 1))
        step_flops = batch_size * float(decode_f[0]) / steps
        decode_s = steps * max(step_flops / gpu.peak_bf16_flops, step_bytes / gpu.memory_bandwidth_bps)
    return prefill_s, decode_s

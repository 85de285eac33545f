"""The FLOPs baseline the seed study criticises, and the roofline time floor beside it.

`flops` estimates energy as (FLOPs / peak FLOP/s) × board power: the GPU is assumed to run at its
peak rate and its rated power for exactly the time the arithmetic needs. The common "× utilisation"
variant divides the peak by an assumed utilisation (e.g. 0.5). Both ignore memory-bound decode,
launch overhead and idle time, which is why they underestimate (docs/results/model-validation-h100.md).

`roofline_s` is the physics floor per phase: max(FLOPs / peak, bytes moved / memory bandwidth), so a
measured point can say how far it is from the limit. The GPUs' published peaks are `meters.gpus`'s.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from llm_energy.architectures import Architecture, kv_cache_bytes, matmul_param_count, weight_bytes
from llm_energy.errors import ConfigError
from llm_energy.meters.gpus import GpuSpec


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


__all__ = ["FlopsModel", "request_flops", "roofline_s"]

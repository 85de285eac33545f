"""What one forward pass of a simulated instance costs: the fitted physical model, a clock, a TP degree.

An instance runs a configuration (`InstanceConfig`: tensor-parallel degree, SM clock, max_num_seqs) on
the GPU a profile was fitted on. Its passes cost what `PhysicalModel.prefill_pass` / `decode_step` say,
changed by two models, each labelled:

* **SM clock** (`modelled`): `control.dvfs.phase_factors` scale prefill time and energy by the prefill
  factors and decode time and energy by the decode factors (prefill compute-bound, decode memory-bound).
* **Tensor parallelism** (`assumed`: no multi-GPU measurement exists in this project): a pass on TP t GPUs
  takes ``t_1 / (t · η) + all-reduce`` with η = `TpModel.efficiency` (0.8), and draws t × the one-GPU
  pass's mean power over that time; the all-reduce is 2 per layer, each ``α + 2(t−1)/t · bytes / β`` (NCCL
  ring bound; α and β are NVLink-class guesses, below). Idle power is t × the GPU's; the KV cache holds
  t × one GPU's free memory plus the (t − 1) weight copies TP does not need.

A mixed iteration (a prefill chunk and the running batch's decode step in one forward) costs the prefill
pass plus the decode step minus the larger of the two per-forward constants (`MIXED_OVERLAP`): both
constants stand for reading the weights once and launching the forward, which a mixed forward pays once;
it pays the smaller one (the decode step's, under CUDA graphs: 6.6 ms against prefill's 10.5 ms on the
H100 profile). Of the two choices this one reproduces the measured online TPOT better
(docs/results/simulate-h200.md).

Reconfiguration costs (`RECONFIG_COSTS`) come from DynamoLLM (Stojkovic et al., HPCA 2025, §IV):
setting a GPU clock takes 50–80 ms, re-sharding a model to another TP ~100 ms to seconds, starting a
new instance minutes (weights loaded, engine warmed up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from llm_energy.control.dvfs import PhaseFactors, phase_factors
from llm_energy.errors import ConfigError
from llm_energy.modeling.physical import PhysicalModel

__all__ = [
    "MIXED_OVERLAP",
    "RECONFIG_COSTS",
    "InstanceConfig",
    "PassCosts",
    "ReconfigCosts",
    "TpModel",
]

MIXED_OVERLAP = True
"""A mixed prefill+decode iteration pays one per-forward constant (the smaller), not both."""


@dataclass(frozen=True)
class ReconfigCosts:
    """Seconds a reconfiguration takes (the instance serves nothing meanwhile, drawing idle power).

    Attributes:
        clock_change_s: Setting the SM clock (DynamoLLM: 50–80 ms; the upper end is taken).
        reshard_s: Re-sharding to another TP degree on GPUs that hold the weights (~100 ms to seconds).
        instance_start_s: Starting an instance on cold GPUs (minutes: load weights, warm up).
        source: Where the numbers come from.
    """

    clock_change_s: float = 0.08
    reshard_s: float = 1.0
    instance_start_s: float = 120.0
    source: str = (
        "DynamoLLM (Stojkovic et al., HPCA 2025): clock 50-80 ms, re-shard ~0.1-few s, start minutes"
    )


RECONFIG_COSTS = ReconfigCosts()


@dataclass(frozen=True)
class TpModel:
    """The assumed tensor-parallel model (no multi-GPU measurement exists: every TP > 1 figure is assumed).

    Attributes:
        efficiency: η: a pass on t GPUs takes t_1 / (t · η) before its all-reduces.
        allreduce_latency_s: α per all-reduce (NVLink, small messages; assumed).
        allreduce_bandwidth_bps: β, bus bandwidth of one all-reduce (NVLink 4, assumed 360 GB/s).
        layers: Transformer layers (2 all-reduces each).
        allreduce_bytes_per_token: Bytes all-reduced per token per pass (2 per layer × hidden × 2 bytes).
    """

    efficiency: float = 0.8
    allreduce_latency_s: float = 8e-6
    allreduce_bandwidth_bps: float = 360e9
    layers: int = 32
    allreduce_bytes_per_token: float = 2 * 32 * 4096 * 2.0

    def allreduce_s(self, tp: int, tokens: float) -> float:
        """Seconds of a pass's all-reduces over `tokens` tokens on `tp` GPUs (0 on one GPU)."""
        if tp <= 1:
            return 0.0
        ring = 2.0 * (tp - 1) / tp * tokens * self.allreduce_bytes_per_token / self.allreduce_bandwidth_bps
        return 2 * self.layers * self.allreduce_latency_s + ring

    def describe(self) -> str:
        """The assumption in one sentence."""
        return (
            f"TP > 1 is assumed, not measured: time/(TP × {self.efficiency:g}) + 2 all-reduces per layer "
            f"(α {self.allreduce_latency_s * 1e6:g} µs, β {self.allreduce_bandwidth_bps / 1e9:g} GB/s), "
            "power × TP"
        )


@dataclass(frozen=True)
class InstanceConfig:
    """How one serving instance runs.

    Attributes:
        tp: Tensor-parallel degree (GPUs of the instance).
        clock_mhz: SM clock; None is the GPU's maximum.
        max_num_seqs: Most sequences scheduled at once; None is the profile's.
    """

    tp: int = 1
    clock_mhz: float | None = None
    max_num_seqs: int | None = None

    def __post_init__(self) -> None:
        """Check the TP degree and the limits.

        Raises:
            ConfigError: TP not one of 1, 2, 4, 8; a clock or max_num_seqs not > 0.
        """
        if self.tp not in (1, 2, 4, 8):
            raise ConfigError(f"tp must be 1, 2, 4 or 8, got {self.tp}")
        if self.clock_mhz is not None and not (math.isfinite(self.clock_mhz) and self.clock_mhz > 0):
            raise ConfigError(f"clock_mhz must be > 0, got {self.clock_mhz}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be ≥ 1, got {self.max_num_seqs}")

    def label(self) -> str:
        """Short label, e.g. `TP1 @1980 MHz`."""
        clock = "max" if self.clock_mhz is None else f"{self.clock_mhz:.0f}"
        return f"TP{self.tp} @{clock} MHz"


@dataclass(frozen=True)
class PassCosts:
    """Time (s) and energy (J) of the forward passes of one instance configuration.

    Attributes:
        model: The fitted physical model (one GPU, maximum clock).
        tp: Tensor-parallel degree.
        clock_mhz: The SM clock.
        max_clock_mhz: The GPU's maximum SM clock.
        max_num_seqs: The instance's sequence cap.
        tp_model: The assumed TP model.
    """

    model: PhysicalModel
    tp: int
    clock_mhz: float
    max_clock_mhz: float
    max_num_seqs: int
    tp_model: TpModel = field(default_factory=TpModel)

    @cached_property
    def factors(self) -> PhaseFactors:
        """DVFS phase factors at this clock (`modelled`)."""
        return phase_factors(self.clock_mhz, self.max_clock_mhz)

    @cached_property
    def _coef(self) -> tuple[float, ...]:
        """Plain-float coefficients: prefill (pass, per token, per pair), decode (step, per seq, per ctx)."""
        m, s = self.model, self.model.shape
        pt, pe, dt, de = m.prefill.time_s, m.prefill.energy_j, m.decode.time_s, m.decode.energy_j
        return (
            pt[0], pt[1] * s.gemm_flops_per_token, pt[2] * s.attention_flops_per_pair,
            pe[0], pe[1] * s.gemm_flops_per_token, pe[2] * s.attention_flops_per_pair,
            dt[0], dt[2], dt[3] * s.kv_bytes_per_token,
            de[0], de[2], de[3] * s.kv_bytes_per_token,
        )  # fmt: skip

    @property
    def idle_power_w(self) -> float:
        """Idle power of the instance's GPUs, watts."""
        return self.model.idle_power_w * self.tp

    @cached_property
    def kv_capacity_tokens(self) -> int:
        """Context tokens the instance's KV cache holds (TP: t GPUs' memory, one copy of the weights)."""
        one = self.model.kv_capacity_tokens
        weights_tokens = self.model.shape.weight_bytes / max(self.model.shape.kv_bytes_per_token, 1.0)
        return int(self.tp * one + (self.tp - 1) * weights_tokens)

    def _scale(self, t1: float, e1: float, tf: float, ef: float, tokens: float) -> tuple[float, float]:
        """Apply the clock factors, then the TP model, to a one-GPU (seconds, joules)."""
        t, e = t1 * tf, e1 * ef
        if self.tp == 1:
            return t, e
        eff = self.tp_model.efficiency
        ar = self.tp_model.allreduce_s(self.tp, tokens)
        power = e / t if t > 0 else 0.0
        return t / (self.tp * eff) + ar, e / eff + power * self.tp * ar

    def prefill(self, tokens: float, pairs: float) -> tuple[float, float]:
        """(s, J) of one prefill forward over `tokens` new tokens with `pairs` causal attention pairs."""
        c = self._coef
        t1 = c[0] + c[1] * tokens + c[2] * pairs
        e1 = c[3] + c[4] * tokens + c[5] * pairs
        f = self.factors
        return self._scale(t1, e1, f.prefill_time, f.prefill_energy, tokens)

    def decode_line(self, batch: int, context_tokens: float) -> tuple[float, float, float, float]:
        """A decode step as lines in its context: (s, J) at `context_tokens` and their slope per token.

        Decode cost is linear in the context read, so k consecutive steps of a fixed batch (context
        growing by `batch` a step) sum in closed form (`leap`).
        """
        c = self._coef
        m = self.model
        expert_t = expert_e = 0.0
        if m.shape.experts:
            touched = float(m.shape.touched_expert_bytes(batch))  # type: ignore[arg-type]
            expert_t, expert_e = touched * m.decode.time_s[1], touched * m.decode.energy_j[1]
        f = self.factors
        t0, e0 = self._scale(
            c[6] + expert_t + c[7] * batch + c[8] * context_tokens,
            c[9] + expert_e + c[10] * batch + c[11] * context_tokens,
            f.decode_time, f.decode_energy, batch,
        )  # fmt: skip
        eff = self.tp_model.efficiency if self.tp > 1 else 1.0
        return t0, e0, c[8] * f.decode_time / (self.tp * eff), c[11] * f.decode_energy / eff

    def mixed_overlap(self) -> tuple[float, float]:
        """(s, J) a mixed iteration does not pay twice: the larger per-forward constant (each)."""
        c, f = self._coef, self.factors
        pre = self._scale(c[0], c[3], f.prefill_time, f.prefill_energy, 0.0)
        dec = self._scale(c[6], c[9], f.decode_time, f.decode_energy, 0.0)
        return max(pre[0], dec[0]), max(pre[1], dec[1])


def leap(t0: float, e0: float, dt: float, de: float, batch: int, steps: int) -> tuple[float, float]:
    """Total (s, J) of `steps` decode steps of `batch` sequences, step j reading j × batch more context."""
    tri = steps * (steps - 1) / 2.0
    return steps * t0 + dt * batch * tri, steps * e0 + de * batch * tri


def steps_done_by(t0: float, dt: float, batch: int, elapsed_s: float, steps: int) -> int:
    """Whole steps of a leap (`leap`) finished `elapsed_s` after it began (0 … steps)."""
    a = dt * batch / 2.0
    b = t0 - a
    if a <= 0:
        k = math.floor(elapsed_s / t0) if t0 > 0 else steps
    else:  # a k² + b k = elapsed
        k = math.floor((-b + math.sqrt(b * b + 4 * a * elapsed_s)) / (2 * a))
    k = max(0, min(steps, k))
    while k < steps and leap(t0, 0.0, dt, 0.0, batch, k + 1)[0] <= elapsed_s * (1 + 1e-12):
        k += 1
    while k > 0 and leap(t0, 0.0, dt, 0.0, batch, k)[0] > elapsed_s * (1 + 1e-12):
        k -= 1
    return k

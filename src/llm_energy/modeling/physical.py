"""The physical model: time and energy of every forward pass from roofline-structured terms.

Why each term is there (docs/methodology.md, "The physical model", has the roofline numbers):

* **Prefill pass** (one forward over ``n`` new tokens, chunked as the engine chunks them):
  ``t = t_pass · passes + GEMM FLOPs / θ_gemm + attention FLOPs / θ_attn`` where GEMM FLOPs =
  2 · active parameters · tokens (compute-bound matrix work) and attention FLOPs = 4 · layers · query heads
  · head dim · Σ causal (query, key) pairs (quadratic in context; GQA changes the bytes, not these FLOPs).
  ``passes`` carries what every forward pays once: reading the weights, launches.
* **Decode step** (one token for each of ``B`` sequences holding ``C`` context tokens in all):
  ``t = t_step + expert bytes touched / β_w + B · t_seq + KV bytes read / β_kv``. The weights are read once
  per step (dense: constant, inside ``t_step``; MoE: the experts the batch touches, which grows with B),
  the KV cache of every sequence is read once per step (2 · layers · KV heads · head dim · bytes per
  context token), and each sequence costs a little GEMM work, sampling and bookkeeping.
* **Energy** has the same terms, each at its own fitted energy per unit (so each term's effective power is
  its energy coefficient / its time coefficient). Energy is total board energy, idle included; the profile's
  idle power × time gives the dynamic (above-idle) part.

All coefficients are non-negative and fitted by least squares on relative residuals (`modeling/fitting.py`),
so the model is a handful of numbers that extrapolate as the physics does: attention quadratically in
prompt length, KV reads linearly in context, never per-token energy held at a grid edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from llm_energy.errors import ConfigError


@dataclass(frozen=True)
class ShapeConstants:
    """What the model shape fixes: FLOPs per token and per attention pair, bytes per KV token, weight bytes.

    Attributes:
        gemm_flops_per_token: 2 · active matmul parameters (one token through every matrix).
        attention_flops_per_pair: 4 · layers · query heads · head dim (QKᵀ and PV for one query-key pair).
        kv_bytes_per_token: Bytes of cache per context token (keys and values, every layer and KV head).
        weight_bytes: Bytes the weights occupy (every expert included).
        expert_bytes: Bytes of all experts' MLP weights (0 for a dense model).
        experts: Experts per MoE layer (0 dense).
        experts_per_token: Experts each token runs through (0 dense).
        max_context_tokens: The model's longest sequence (``max_position_embeddings``).
    """

    gemm_flops_per_token: float
    attention_flops_per_pair: float
    kv_bytes_per_token: float
    weight_bytes: float
    expert_bytes: float = 0.0
    experts: int = 0
    experts_per_token: int = 0
    max_context_tokens: int = 131072

    @classmethod
    def of(cls, arch: Any, bytes_per_param: float = 2.0) -> ShapeConstants:
        """Derive the constants from an `Architecture` (bf16 weights and cache unless told)."""
        from llm_energy.architectures.counts import (
            experts_per_token,
            kv_cache_bytes,
            matmul_param_count,
            num_experts,
            weight_bytes,
        )

        experts = num_experts(arch)
        expert_params = experts * 3 * arch.hidden_size * arch.intermediate_size * arch.num_layers
        return cls(
            gemm_flops_per_token=2.0 * matmul_param_count(arch, active=True),
            attention_flops_per_pair=4.0 * arch.num_layers * arch.num_heads * arch.head_dim,
            kv_bytes_per_token=kv_cache_bytes(arch, 1, 1, bytes_per_param),
            weight_bytes=weight_bytes(arch, bytes_per_param),
            expert_bytes=float(expert_params) * bytes_per_param,
            experts=experts,
            experts_per_token=experts_per_token(arch),
            max_context_tokens=arch.max_context_tokens,
        )

    @classmethod
    def generic(cls, max_context_tokens: int = 131072) -> ShapeConstants:
        """Unit constants for a model whose shape is unknown (a simulated engine, an unlisted checkpoint).

        Every term keeps its form (per token, per causal pair, per context token read), so the fit works
        the same; only the roofline reading of the coefficients (FLOP/s, bytes/s) is lost.
        """
        return cls(1.0, 1.0, 1.0, 0.0, max_context_tokens=max_context_tokens)

    def touched_expert_bytes(self, batch: np.ndarray) -> np.ndarray:
        """Expert weight bytes one decode step reads when B tokens each pick k of E experts (uniform)."""
        if not self.experts:
            return np.zeros_like(batch, dtype=float)
        miss = (1.0 - self.experts_per_token / self.experts) ** np.asarray(batch, float)
        out: np.ndarray = self.expert_bytes * (1.0 - miss)
        return out


PREFILL_TERMS = ("pass", "gemm_flop", "attention_flop")
DECODE_TERMS = ("step", "expert_byte", "sequence", "kv_byte")


def prefill_features(shape: ShapeConstants, tokens: Any, attention_pairs: Any, passes: Any) -> np.ndarray:
    """Feature matrix [passes, GEMM FLOPs, attention FLOPs] of prefill work."""
    t, a, p = (np.asarray(x, float) for x in (tokens, attention_pairs, passes))
    t, a, p = np.broadcast_arrays(t, a, p)
    return np.stack([p, shape.gemm_flops_per_token * t, shape.attention_flops_per_pair * a], axis=-1)


def decode_features(shape: ShapeConstants, batch: Any, context_tokens: Any) -> np.ndarray:
    """Feature matrix [1, expert bytes touched, sequences, KV bytes read] of one decode step."""
    b, c = np.broadcast_arrays(np.asarray(batch, float), np.asarray(context_tokens, float))
    return np.stack(
        [np.ones_like(b), shape.touched_expert_bytes(b), b, shape.kv_bytes_per_token * c], axis=-1
    )


def causal_pairs(new_tokens: Any, prior_tokens: Any = 0.0) -> np.ndarray:
    """(query, key) pairs of a causal prefill of `new_tokens` after `prior_tokens` already cached."""
    n, p = np.asarray(new_tokens, float), np.asarray(prior_tokens, float)
    out: np.ndarray = n * p + n * (n + 1) / 2
    return out


@dataclass(frozen=True)
class Coefficients:
    """Fitted time (s per unit) and energy (J per unit) of each term of one phase."""

    time_s: tuple[float, ...]
    energy_j: tuple[float, ...]

    def apply(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (seconds, joules) for rows of `features`."""
        t: np.ndarray = features @ np.asarray(self.time_s)
        e: np.ndarray = features @ np.asarray(self.energy_j)
        return t, e


@dataclass(frozen=True)
class Coverage:
    """The calibrated range (log distance outside it widens the uncertainty)."""

    input_tokens: tuple[float, float]
    output_tokens: tuple[float, float]
    batch_size: tuple[float, float]
    context_tokens: tuple[float, float]

    def octaves_outside(self, batch: Any, lin: Any, lout: Any) -> np.ndarray:
        """Octaves (log2 distance) outside the calibrated range, summed over input, batch and context.

        The output length is not an axis of its own: no term depends on it except through the context a
        decode step reads (covered by `context_tokens`) and the number of steps, which multiplies a
        calibrated step cost without extrapolating it.
        """
        total = np.zeros(np.broadcast(np.asarray(batch), np.asarray(lin), np.asarray(lout)).shape)
        values = (lin, batch, np.asarray(lin, float) + np.asarray(lout, float))
        ranges = (self.input_tokens, self.batch_size, self.context_tokens)
        for x, (lo, hi) in zip(values, ranges, strict=True):
            xv = np.maximum(np.asarray(x, float), 1.0)
            total = total + np.maximum(0.0, np.log2(xv / hi)) + np.maximum(0.0, np.log2(lo / xv))
        return total


@dataclass(frozen=True)
class ErrorModel:
    """Relative 1-σ error: cross-validated model error ⊕ meter error, growing by `per_octave` outside."""

    cv_rel: float
    meter_rel: float
    per_octave: float
    cv: dict[str, float] = field(default_factory=dict)
    """Leave-one-out statistics over every calibration point (mean, max, rms, points)."""

    def relative(self, octaves: np.ndarray) -> np.ndarray:
        """Relative uncertainty at `octaves` outside the calibrated range."""
        inside = math.hypot(self.cv_rel, self.meter_rel)
        out: np.ndarray = np.sqrt(inside**2 + (self.per_octave * np.asarray(octaves, float)) ** 2)
        return out


@dataclass(frozen=True)
class BatchCost:
    """Time and energy of running a batch of equal requests to completion (arrays broadcast)."""

    prefill_s: np.ndarray
    prefill_j: np.ndarray
    decode_s: np.ndarray
    decode_j: np.ndarray


@dataclass(frozen=True)
class PhysicalModel:
    """The fitted physical model of one configuration (engine, mode, model shape, GPU).

    Attributes:
        shape: Constants of the model shape.
        prefill: Coefficients of `PREFILL_TERMS`.
        decode: Coefficients of `DECODE_TERMS`.
        idle_power_w: Board power with nothing running (dynamic energy = total − idle × time); 0 if unknown.
        kv_capacity_tokens: Context tokens the engine's KV cache holds (limits the batch).
        max_num_seqs: The engine's cap on concurrent sequences (None: only KV capacity limits).
        prefill_chunk_tokens: Tokens per prefill forward pass (the engine's chunk / batched-token budget).
        coverage: The calibrated range.
        errors: The uncertainty model.
    """

    name: ClassVar[str] = "physical"
    shape: ShapeConstants
    prefill: Coefficients
    decode: Coefficients
    idle_power_w: float
    kv_capacity_tokens: float
    max_num_seqs: int | None
    prefill_chunk_tokens: int
    coverage: Coverage
    errors: ErrorModel

    # -- one forward pass --------------------------------------------------------------------------

    def prefill_pass(
        self, tokens: Any, attention_pairs: Any, passes: Any = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, joules) of prefilling `tokens` new tokens with `attention_pairs` causal pairs."""
        return self.prefill.apply(prefill_features(self.shape, tokens, attention_pairs, passes))

    def decode_step(self, batch: Any, context_tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, joules) of one decode step of `batch` sequences holding `context_tokens` in all."""
        return self.decode.apply(decode_features(self.shape, batch, context_tokens))

    # -- a batch of equal requests ------------------------------------------------------------------

    def passes(self, batch: Any, lin: Any) -> np.ndarray:
        """Forward passes a prefill of `batch` prompts of `lin` tokens takes at the engine's chunk size."""
        out: np.ndarray = np.maximum(
            1.0, np.ceil(np.asarray(batch, float) * np.asarray(lin, float) / self.prefill_chunk_tokens)
        )
        return out

    def batch_cost(self, batch: Any, lin: Any, lout: Any) -> BatchCost:
        """Run `batch` requests of `lin` input and `lout` output tokens together (static batch)."""
        b, i, o = np.broadcast_arrays(*(np.asarray(x, float) for x in (batch, lin, lout)))
        pre_s, pre_j = self.prefill_pass(b * i, b * causal_pairs(i), self.passes(b, i))
        steps = np.maximum(o - 1, 0)
        # Decode features are linear in context: the sum over steps is steps × (features at the mean context).
        step_s, step_j = self.decode_step(b, b * (i + o / 2))
        return BatchCost(pre_s, pre_j, steps * step_s, steps * step_j)

    def max_batch(self, lin: Any, lout: Any) -> np.ndarray:
        """Largest batch the engine runs at this shape: KV capacity, then its max_num_seqs."""
        ctx = np.asarray(lin, float) + np.asarray(lout, float)
        cap = np.floor(self.kv_capacity_tokens / np.maximum(ctx, 1.0))
        if self.max_num_seqs is not None:
            cap = np.minimum(cap, self.max_num_seqs)
        out: np.ndarray = np.maximum(cap, 1.0)
        return out

    def check_lengths(self, lin: np.ndarray, lout: np.ndarray, first_row: int = 0) -> None:
        """Refuse requests the model cannot run (longer than its context or than the KV cache holds).

        Raises:
            ConfigError: naming the first such row and the limit.
        """
        limit = min(self.shape.max_context_tokens, self.kv_capacity_tokens)
        bad = np.flatnonzero((lin + lout > limit) | (lin < 1) | (lout < 1))
        if bad.size:
            k = int(bad[0])
            raise ConfigError(
                f"row {first_row + k + 1}: {int(lin[k]):,} input + {int(lout[k]):,} output tokens is beyond "
                f"what the model runs (context ≤ {int(limit):,} tokens, ≥ 1 token each); "
                f"{bad.size:,} such request(s)"
            )

    def with_errors(self, errors: ErrorModel) -> PhysicalModel:
        """A copy with another uncertainty model."""
        return replace(self, errors=errors)

    # -- serialisation ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "shape": self.shape.__dict__,
            "prefill": {"terms": PREFILL_TERMS, **self.prefill.__dict__},
            "decode": {"terms": DECODE_TERMS, **self.decode.__dict__},
            "idle_power_w": self.idle_power_w,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "max_num_seqs": self.max_num_seqs,
            "prefill_chunk_tokens": self.prefill_chunk_tokens,
            "coverage": self.coverage.__dict__,
            "errors": self.errors.__dict__,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhysicalModel:
        """Inverse of `to_dict` (the profile schema has checked types and signs)."""

        def coef(d: dict[str, Any], n: int) -> Coefficients:
            t, e = tuple(float(x) for x in d["time_s"]), tuple(float(x) for x in d["energy_j"])
            if len(t) != n or len(e) != n:
                raise ConfigError(
                    f"physical model: expected {n} coefficients per phase, got {len(t)}/{len(e)}"
                )
            return Coefficients(t, e)

        cov = data["coverage"]
        return cls(
            shape=ShapeConstants(**data["shape"]),
            prefill=coef(data["prefill"], len(PREFILL_TERMS)),
            decode=coef(data["decode"], len(DECODE_TERMS)),
            idle_power_w=float(data["idle_power_w"]),
            kv_capacity_tokens=float(data["kv_capacity_tokens"]),
            max_num_seqs=None if data.get("max_num_seqs") is None else int(data["max_num_seqs"]),
            prefill_chunk_tokens=int(data["prefill_chunk_tokens"]),
            coverage=Coverage(**{k: (float(v[0]), float(v[1])) for k, v in cov.items()}),
            errors=ErrorModel(**data["errors"]),
        )

    def roofline(self, peak_flops: float, bandwidth_bps: float) -> dict[str, float]:
        """Fitted effective rates beside the GPU's published ones (fraction of peak; > 1 is unphysical)."""
        pt, dt = self.prefill.time_s, self.decode.time_s
        gemm = 1 / pt[1] if pt[1] > 0 else float("inf")
        attn = 1 / pt[2] if pt[2] > 0 else float("inf")
        kv = 1 / dt[3] if dt[3] > 0 else float("inf")
        return {
            "gemm_flops_per_s": gemm,
            "gemm_of_peak": gemm / peak_flops,
            "attention_flops_per_s": attn,
            "attention_of_peak": attn / peak_flops,
            "kv_bytes_per_s": kv,
            "kv_of_peak_bandwidth": kv / bandwidth_bps,
            "weights_read_s_floor": self.shape.weight_bytes / bandwidth_bps,
            "decode_step_s_at_batch_1": float(dt[0] + dt[2]),
        }

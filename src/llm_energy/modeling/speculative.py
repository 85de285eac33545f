"""Energy model of speculative decoding from measured component costs (a model, labelled as such).

A round of speculative decoding with look-ahead γ costs γ draft steps plus one target verification of
γ + 1 tokens per row, and returns on average τ tokens per row. With per-token acceptance α,
independent across positions (the standard assumption of Leviathan et al. 2023):

* per-row advance (vLLM): ``τ = 1 + α + α² + … + α^γ = (1 − α^(γ+1)) / (1 − α)`` (γ + 1 at α = 1);
* batch-minimum advance (our `hf-spec` engine, one cache length for the batch): the batch keeps
  ``min_r A_r`` proposals, and ``P(min_r A_r ≥ k) = α^(k·B)``, so ``τ = 1 + Σ_{k=1..γ} α^(k·B)``.

Energy per output token is then ``(γ·E_draft + E_verify) / (B·τ)`` against ``E_step / B`` for plain
decoding, where each E is a measured GPU energy at batch B (idle included, as every window is).
The crossover batch of an α is where the ratio of the two reaches 1, interpolated between measured
batch sizes in log2(batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llm_energy.errors import ConfigError

Policy = Literal["per-row", "batch-min"]
"""How a batch advances after verification (see the module docstring)."""


@dataclass(frozen=True)
class SpecCosts:
    """Measured costs at one batch size, per call (the whole batch), GPU energy including idle.

    Attributes:
        batch_size: Requests in the batch.
        lookahead: γ, the draft tokens proposed per round.
        draft_step_j: Energy of one draft forward of one token per row.
        draft_step_s: Its duration.
        verify_j: Energy of one target forward of γ + 1 tokens per row.
        verify_s: Its duration.
        plain_step_j: Energy of one plain (target-only) decode step.
        plain_step_s: Its duration.
    """

    batch_size: int
    lookahead: int
    draft_step_j: float
    draft_step_s: float
    verify_j: float
    verify_s: float
    plain_step_j: float
    plain_step_s: float

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lookahead < 1:
            raise ConfigError(f"lookahead (γ) must be >= 1, got {self.lookahead}")


def draft_step_from_decode(
    *, decode_j: float, decode_s: float, rounds: int, draft_steps: int, verify_j: float, verify_s: float
) -> tuple[float, float]:
    """Draft-step energy and time implied by a speculative decode: ``(decode − rounds·verify) / steps``.

    On the H100 a draft step timed in a window of its own read 65–80 ms (≈ 3× its cost inside a real
    decode, 15–20 ms), so the model takes the draft's cost from a full speculative decode of the same
    batch instead: the decode's energy and time less its `rounds` verifications (measured apart, with the
    same shapes), spread over its `draft_steps`. A constructed α = 1 run gives the most draft steps.

    Returns:
        (draft_step_j, draft_step_s).

    Raises:
        ConfigError: no draft steps, or verifications that account for the whole decode (nothing left).
    """
    if draft_steps < 1 or rounds < 0:
        raise ConfigError(f"need draft_steps >= 1 and rounds >= 0, got {draft_steps} and {rounds}")
    left_j, left_s = decode_j - rounds * verify_j, decode_s - rounds * verify_s
    if left_j <= 0 or left_s <= 0:
        raise ConfigError(
            f"{rounds} verifications ({rounds * verify_j:.1f} J, {rounds * verify_s:.3f} s) account for "
            f"the whole decode ({decode_j:.1f} J, {decode_s:.3f} s): the draft's cost cannot be derived"
        )
    return left_j / draft_steps, left_s / draft_steps


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"acceptance α must be in [0, 1], got {alpha!r}")


def tokens_per_round(alpha: float, lookahead: int, batch_size: int = 1, policy: Policy = "per-row") -> float:
    """Expected tokens each row gains per round (accepted proposals + the target's own token).

    Args:
        alpha: Per-token acceptance probability α in [0, 1].
        lookahead: γ >= 1.
        batch_size: Rows; only the batch-minimum policy depends on it.
        policy: ``"per-row"`` or ``"batch-min"``.

    Returns:
        τ, between 1 and γ + 1.

    Raises:
        ConfigError: α outside [0, 1], γ < 1, batch < 1 or an unknown policy.
    """
    _check_alpha(alpha)
    if lookahead < 1:
        raise ConfigError(f"lookahead (γ) must be >= 1, got {lookahead}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if policy == "per-row":
        if alpha == 1.0:
            return float(lookahead + 1)
        return (1.0 - alpha ** (lookahead + 1)) / (1.0 - alpha)
    if policy == "batch-min":
        return 1.0 + sum(alpha ** (k * batch_size) for k in range(1, lookahead + 1))
    raise ConfigError(f"unknown policy {policy!r}; use 'per-row' or 'batch-min'")


def spec_energy_per_token_j(costs: SpecCosts, alpha: float, policy: Policy = "per-row") -> float:
    """Modelled energy per output token of speculative decoding: ``(γ·E_d + E_v) / (B·τ)``."""
    tau = tokens_per_round(alpha, costs.lookahead, costs.batch_size, policy)
    return (costs.lookahead * costs.draft_step_j + costs.verify_j) / (costs.batch_size * tau)


def spec_time_per_token_s(costs: SpecCosts, alpha: float, policy: Policy = "per-row") -> float:
    """Modelled time per decode step of a row (inter-token latency): ``(γ·t_d + t_v) / τ``."""
    tau = tokens_per_round(alpha, costs.lookahead, costs.batch_size, policy)
    return (costs.lookahead * costs.draft_step_s + costs.verify_s) / tau


def plain_energy_per_token_j(costs: SpecCosts) -> float:
    """Measured energy per output token of plain decoding: ``E_step / B``."""
    return costs.plain_step_j / costs.batch_size


def energy_ratio(costs: SpecCosts, alpha: float, policy: Policy = "per-row") -> float:
    """Speculative over plain energy per output token (< 1: speculation saves energy)."""
    return spec_energy_per_token_j(costs, alpha, policy) / plain_energy_per_token_j(costs)


@dataclass(frozen=True)
class Crossover:
    """Where speculation stops saving energy for one α.

    Attributes:
        alpha: The acceptance.
        batch_size: Interpolated batch where the ratio reaches 1, or None when it does not cross
            inside the measured range.
        status: ``"crosses"``; ``"never-saves"`` (ratio >= 1 already at the smallest batch);
            ``"saves-throughout"`` (ratio < 1 up to the largest batch).
        ratios: The energy ratio at each measured batch, ascending batch.
    """

    alpha: float
    batch_size: float | None
    status: Literal["crosses", "never-saves", "saves-throughout"]
    ratios: tuple[tuple[int, float], ...]


def crossover_batch(costs: Sequence[SpecCosts], alpha: float, policy: Policy = "per-row") -> Crossover:
    """Return the batch size at which speculative decoding stops saving energy, for acceptance α.

    The ratio is evaluated at each measured batch; between the first batch below 1 and the next at or
    above 1 it is interpolated linearly in log2(batch).

    Raises:
        ConfigError: no costs, or two entries for the same batch size.
    """
    if not costs:
        raise ConfigError("crossover_batch needs costs at one batch size at least")
    ordered = sorted(costs, key=lambda c: c.batch_size)
    batches = [c.batch_size for c in ordered]
    if len(set(batches)) != len(batches):
        raise ConfigError(f"costs hold a batch size twice: {batches}")
    ratios = tuple((c.batch_size, energy_ratio(c, alpha, policy)) for c in ordered)
    if ratios[0][1] >= 1.0:
        return Crossover(alpha, None, "never-saves", ratios)
    for (b0, r0), (b1, r1) in zip(ratios, ratios[1:], strict=False):
        if r0 < 1.0 <= r1:
            x0, x1 = math.log2(b0), math.log2(b1)
            x = x0 + (1.0 - r0) * (x1 - x0) / (r1 - r0)
            return Crossover(alpha, 2.0**x, "crosses", ratios)
    return Crossover(alpha, None, "saves-throughout", ratios)

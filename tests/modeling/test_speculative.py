"""The energy model of speculative decoding, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from llm_energy.errors import ConfigError
from llm_energy.modeling.speculative import (
    SpecCosts,
    crossover_batch,
    draft_step_from_decode,
    energy_ratio,
    spec_energy_per_token_j,
    spec_time_per_token_s,
    tokens_per_round,
)


def _costs(batch: int, draft_j: float, verify_j: float, plain_j: float, gamma: int = 4) -> SpecCosts:
    return SpecCosts(batch, gamma, draft_j, 0.01, verify_j, 0.03, plain_j, 0.02)


def test_tokens_per_round_by_hand() -> None:
    assert tokens_per_round(0.0, 4) == 1.0
    assert tokens_per_round(1.0, 4) == 5.0
    assert tokens_per_round(0.5, 4) == pytest.approx(1 + 0.5 + 0.25 + 0.125 + 0.0625)  # 1.9375
    assert tokens_per_round(0.5, 4) == pytest.approx((1 - 0.5**5) / 0.5)
    # Batch minimum of 2 rows: P(min >= k) = 0.5^(2k) -> 1 + 1/4 + 1/16 + 1/64 + 1/256.
    assert tokens_per_round(0.5, 4, 2, "batch-min") == pytest.approx(1.33203125)
    assert tokens_per_round(0.5, 4, 1, "batch-min") == pytest.approx(tokens_per_round(0.5, 4))
    assert tokens_per_round(1.0, 4, 64, "batch-min") == 5.0


def test_energy_and_time_per_token_by_hand() -> None:
    c = _costs(batch=1, draft_j=1.0, verify_j=4.0, plain_j=3.0)
    # (4 draft steps x 1 J + 4 J) / 1.9375 tokens = 4.129 J/token against 3 J/token.
    assert spec_energy_per_token_j(c, 0.5) == pytest.approx(8 / 1.9375)
    assert energy_ratio(c, 0.5) == pytest.approx(8 / 1.9375 / 3)
    assert energy_ratio(c, 1.0) == pytest.approx(8 / 5 / 3)
    assert spec_time_per_token_s(c, 1.0) == pytest.approx((4 * 0.01 + 0.03) / 5)
    c8 = _costs(batch=8, draft_j=1.0, verify_j=4.0, plain_j=3.0)
    assert spec_energy_per_token_j(c8, 1.0) == pytest.approx(8 / 5 / 8)


def test_crossover_interpolates_in_log2_batch() -> None:
    # At α = 1 (τ = 5): ratios 0.5 at batch 1 and 1.5 at batch 4 -> 1.0 halfway in log2: batch 2.
    costs = [_costs(4, 1.0, 26.0, 4.0), _costs(1, 1.0, 1.5, 2.2)]  # (4 + 26) / 20 vs 4 / 4
    cross = crossover_batch(costs, 1.0)
    assert [b for b, _ in cross.ratios] == [1, 4]
    assert cross.ratios[0][1] == pytest.approx(0.5) and cross.ratios[1][1] == pytest.approx(1.5)
    assert cross.status == "crosses"
    assert cross.batch_size == pytest.approx(2.0)
    assert crossover_batch(costs, 0.0).status == "never-saves"  # 5.5 / 2.2 > 1 at batch 1
    cheap = [_costs(1, 0.1, 1.0, 2.0), _costs(4, 0.1, 1.0, 2.0)]
    saves = crossover_batch(cheap, 1.0)
    assert saves.status == "saves-throughout" and saves.batch_size is None


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ConfigError, match="1.5"):
        tokens_per_round(1.5, 4)
    with pytest.raises(ConfigError, match="got 0"):
        tokens_per_round(0.5, 0)
    with pytest.raises(ConfigError, match="lookahead"):
        _costs(1, 1.0, 1.0, 1.0, gamma=0)
    with pytest.raises(ConfigError, match="twice"):
        crossover_batch([_costs(1, 1.0, 1.0, 1.0), _costs(1, 1.0, 1.0, 1.0)], 0.5)
    with pytest.raises(ConfigError):
        crossover_batch([], 0.5)
    assert not math.isnan(tokens_per_round(0.999999, 4))


def test_draft_cost_from_a_decode_removes_its_verifications() -> None:
    # 26 rounds of 5.5 J / 27 ms verifications in a 447.6 J / 2.768 s decode with 101 draft steps.
    j, s = draft_step_from_decode(
        decode_j=447.6, decode_s=2.768, rounds=26, draft_steps=101, verify_j=5.5, verify_s=0.027
    )
    assert j == pytest.approx((447.6 - 26 * 5.5) / 101)
    assert s == pytest.approx((2.768 - 26 * 0.027) / 101)
    with pytest.raises(ConfigError, match="whole"):
        draft_step_from_decode(
            decode_j=100.0, decode_s=1.0, rounds=20, draft_steps=80, verify_j=6.0, verify_s=0.01
        )
    with pytest.raises(ConfigError, match="draft_steps"):
        draft_step_from_decode(
            decode_j=100.0, decode_s=1.0, rounds=2, draft_steps=0, verify_j=1.0, verify_s=0.01
        )

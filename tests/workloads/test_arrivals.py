"""Arrival generators: exact mean rate, burstiness sets the spread, explicit rng, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from llm_energy.errors import ConfigError
from llm_energy.workloads import gamma_arrivals, poisson_arrivals

N = 20_000
RATE_PER_S = 4.0


def mean_rate_per_s(arrival_s: np.ndarray) -> float:
    """n arrivals, cumulative from the first gap: rate = n / last arrival."""
    return len(arrival_s) / float(arrival_s[-1])


def cv(arrival_s: np.ndarray) -> float:
    gaps = np.diff(arrival_s, prepend=0.0)
    return float(gaps.std() / gaps.mean())


@pytest.mark.parametrize("seed", range(5))
def test_poisson_mean_rate_is_within_3_percent(seed):
    """Poisson arrivals hit the target rate within 3% for n=20,000 (a 3x-clipped sampler is ~5% fast)."""
    arrival_s = poisson_arrivals(N, RATE_PER_S, np.random.default_rng(seed))
    assert mean_rate_per_s(arrival_s) == pytest.approx(RATE_PER_S, rel=0.03)


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_mean_rate_is_within_3_percent(burstiness):
    """Gamma arrivals keep the target rate whatever the burstiness."""
    arrival_s = gamma_arrivals(N, RATE_PER_S, burstiness, np.random.default_rng(1))
    assert mean_rate_per_s(arrival_s) == pytest.approx(RATE_PER_S, rel=0.03)


def test_clipped_sampler_would_fail_the_rate_test():
    """The rate test has teeth: vidur-style gaps clipped at 3x the mean run ~5% above the target."""
    gaps = np.random.default_rng(0).exponential(1 / RATE_PER_S, N)
    clipped = np.cumsum(np.minimum(gaps, 3 / RATE_PER_S))
    assert mean_rate_per_s(clipped) != pytest.approx(RATE_PER_S, rel=0.03)


def test_burstiness_sets_the_coefficient_of_variation():
    """CV of gaps ≈ 1 for Poisson and ≈ 1/sqrt(burstiness) for gamma."""
    rng = np.random.default_rng(2)
    assert cv(poisson_arrivals(N, RATE_PER_S, rng)) == pytest.approx(1.0, rel=0.05)
    for burstiness in (0.25, 1.0, 4.0):
        expected = 1 / np.sqrt(burstiness)
        assert cv(gamma_arrivals(N, RATE_PER_S, burstiness, rng)) == pytest.approx(expected, rel=0.05)


def test_arrivals_start_at_the_first_gap_and_never_decrease():
    """Times are cumulative sums of positive gaps: the first is > 0 and they are sorted."""
    for arrival_s in (
        poisson_arrivals(100, 1.0, np.random.default_rng(3)),
        gamma_arrivals(100, 1.0, 0.5, np.random.default_rng(3)),
    ):
        assert arrival_s.shape == (100,) and arrival_s.dtype == np.float64
        assert arrival_s[0] > 0
        assert bool((np.diff(arrival_s) >= 0).all())
    assert poisson_arrivals(0, 1.0, np.random.default_rng(0)).shape == (0,)


def test_same_seed_same_times_and_global_state_untouched():
    """The rng argument alone decides the output: same seed, same times; numpy's global state unused."""
    np.random.seed(123)
    before = np.random.get_state()[1].copy()  # type: ignore[index]
    a = gamma_arrivals(50, 2.0, 0.5, np.random.default_rng(9))
    b = gamma_arrivals(50, 2.0, 0.5, np.random.default_rng(9))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, gamma_arrivals(50, 2.0, 0.5, np.random.default_rng(10)))
    assert np.array_equal(np.random.get_state()[1], before)  # type: ignore[index]


@pytest.mark.parametrize(
    ("n", "rate_per_s", "burstiness", "match"),
    [
        (-1, 1.0, 1.0, "number of arrivals"),
        (10, 0.0, 1.0, "rate"),
        (10, -2.0, 1.0, "rate"),
        (10, float("nan"), 1.0, "rate"),
        (10, 1.0, 0.0, "burstiness"),
        (10, 1.0, -1.0, "burstiness"),
    ],
)
def test_invalid_parameters_are_config_errors(n, rate_per_s, burstiness, match):
    """n < 0, rate ≤ 0 (or NaN) and burstiness ≤ 0 are ConfigErrors naming the parameter."""
    with pytest.raises(ConfigError, match=match):
        gamma_arrivals(n, rate_per_s, burstiness, np.random.default_rng(0))
    if burstiness == 1.0:
        with pytest.raises(ConfigError, match=match):
            poisson_arrivals(n, rate_per_s, np.random.default_rng(0))

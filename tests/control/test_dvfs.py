"""The DVFS model reproduces the seed's qualitative findings (DynamoLLM Table I) and stays self-consistent."""

from __future__ import annotations

import pytest

from llm_energy.control import DvfsParams, dvfs_energy_factor, dvfs_prediction, predict_energy_vs_clock
from llm_energy.errors import ConfigError

MAX_MHZ = 1980  # H100 SXM
LOW_MHZ = 1575  # a supported H100 clock ~20% below the maximum
DECODE_HEAVY = 0.1  # share of the energy in prefill
PREFILL_HEAVY = 0.9


def test_max_clock_changes_nothing():
    for share in (0.0, 0.5, 1.0):
        assert dvfs_energy_factor(share, MAX_MHZ, MAX_MHZ) == pytest.approx((1.0, 1.0))


def test_lowering_the_clock_20_percent_cuts_power_with_little_slowdown_for_decode():
    """Seed: up to 20% less power from frequency scaling with little slowdown."""
    pred = dvfs_prediction(DECODE_HEAVY, LOW_MHZ, MAX_MHZ)
    assert pred.power_factor <= 0.85  # ≥ 15% less power
    assert pred.time_factor < 1.10  # < 10% slower
    assert pred.source == "modelled"
    assert any("memory-bound" in a for a in pred.assumptions)


def test_energy_is_saved_for_decode_heavy_but_not_prefill_heavy_work():
    """Seed: 10-26% energy saved at fixed TP (decode dominates serving); compute-bound prefill: nothing."""
    decode_energy, _ = dvfs_energy_factor(DECODE_HEAVY, LOW_MHZ, MAX_MHZ)
    prefill_energy, prefill_time = dvfs_energy_factor(PREFILL_HEAVY, LOW_MHZ, MAX_MHZ)
    assert 0.74 <= decode_energy <= 0.90
    assert prefill_energy > 0.98
    assert prefill_time > 1.2  # prefill slows about as much as the clock drops
    assert dvfs_energy_factor(1.0, LOW_MHZ, MAX_MHZ)[0] >= 1.0


def test_pure_decode_saving_stays_in_the_reported_range_down_to_half_clock():
    curve = predict_energy_vs_clock(0.0, [1800, 1575, 1410, 1200, 990], MAX_MHZ)
    savings = [1 - p.energy_factor for p in curve]
    assert savings == sorted(savings)  # lower clock, more saved, for memory-bound decode
    assert savings[1] >= 0.10
    assert savings[-1] <= 0.30
    assert all(p.time_factor < 1.15 for p in curve)


def test_time_and_energy_are_consistent():
    """power factor × time factor = energy factor, and the time split follows the phase powers."""
    pred = dvfs_prediction(0.4, 1410, MAX_MHZ)
    assert pred.power_factor * pred.time_factor == pytest.approx(pred.energy_factor)
    flat = DvfsParams(prefill_clock_bound=0.0, decode_clock_bound=0.0)
    assert dvfs_prediction(0.4, 1410, MAX_MHZ, params=flat).time_factor == pytest.approx(1.0)


@pytest.mark.parametrize(("share", "clock_mhz"), [(-0.1, 1410), (1.1, 1410), (0.5, 0), (0.5, 2100)])
def test_bad_input_is_a_config_error(share, clock_mhz):
    with pytest.raises(ConfigError):
        dvfs_energy_factor(share, clock_mhz, MAX_MHZ)

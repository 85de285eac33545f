"""The Python API's `measure` context manager on a simulated GPU and clock."""

from __future__ import annotations

import pytest

import llm_energy


def test_measure_block_energy_is_power_times_time(sim_clock, sim_gpu):
    """A 2 s block at 700 W measures 1400 J on gpu:0 within the stated uncertainty."""
    with llm_energy.measure(gpus=[sim_gpu], cpus=[], clock=sim_clock) as handle:
        sim_clock.advance(2.0)
    m = handle.measurement
    assert m.duration_s == pytest.approx(2.0)
    assert m.source == {"gpu:0": "measured"}
    assert m.energy_j["gpu:0"] == pytest.approx(700.0 * 2.0, abs=m.uncertainty_j["gpu:0"])
    assert m.gpu_energy_j == pytest.approx(sim_gpu.true_energy_j(0.0, 2.0), abs=m.gpu_uncertainty_j)
    assert m.flags == ()


def test_measure_lets_the_workload_exception_propagate(sim_clock, sim_gpu):
    """An exception inside the block propagates unchanged and leaves no result behind."""
    boom = RuntimeError("workload failed")
    with (
        pytest.raises(RuntimeError) as info,
        llm_energy.measure(gpus=[sim_gpu], cpus=[], clock=sim_clock) as handle,
    ):
        sim_clock.advance(0.5)
        raise boom
    assert info.value is boom
    assert handle.result is None
    with pytest.raises(llm_energy.MeterError):
        _ = handle.measurement

"""RAPL and the TDP estimate against a simulated powercap tree and a scripted /proc/stat."""

from __future__ import annotations

import pytest

from llm_energy.errors import CounterUnavailable
from llm_energy.meters import EnergyMeter, RaplCpu, SimClock, TdpCpu, detect_cpus
from llm_energy.meters.simulated import SimulatedRapl


def test_rapl_reads_package_and_dram(tmp_path):
    """Package and DRAM energy come from the counters, labelled measured."""
    rapl = SimulatedRapl(tmp_path, packages=2)
    clock = SimClock()
    meter = EnergyMeter(cpus=[RaplCpu(tmp_path)], clock=clock)
    with meter.window("w") as w:
        rapl.add_energy_j("cpu:0", 50.0)
        rapl.add_energy_j("cpu:1", 20.0)
        rapl.add_energy_j("dram:0", 5.0)
        clock.advance(1.0)
    m = w.measurement
    assert m.energy_j == pytest.approx({"cpu:0": 50.0, "cpu:1": 20.0, "dram:0": 5.0, "dram:1": 0.0})
    assert set(m.source.values()) == {"measured"}


def test_rapl_wraparound(tmp_path):
    """A counter that wraps at max_energy_range_uj inside a window still gives the right energy."""
    rapl = SimulatedRapl(tmp_path, with_dram=False, max_energy_range_uj=100_000_000, start_uj=95_000_000)
    clock = SimClock()
    meter = EnergyMeter(cpus=[RaplCpu(tmp_path)], clock=clock)
    with meter.window("w") as w:
        rapl.add_energy_j("cpu:0", 30.0)  # 95 J + 30 J wraps past 100 J
        clock.advance(1.0)
    assert w.measurement.energy_j["cpu:0"] == pytest.approx(30.0)


def test_rapl_missing_raises_unavailable(tmp_path):
    """No readable zone: CounterUnavailable, and detection falls back to an estimate."""
    with pytest.raises(CounterUnavailable):
        RaplCpu(tmp_path)
    cpus, notes = detect_cpus(rapl_root=tmp_path, tdp_w=100.0)
    assert isinstance(cpus[0], TdpCpu)
    assert "ESTIMATED" in notes[0]


def test_tdp_estimate_is_labelled_and_proportional_to_utilisation():
    """TDP x utilisation: 100 W at 50% busy for 2 s is 100 J, labelled estimated with a ±50% bound."""
    clock = SimClock()
    jiffies = {"busy": 0, "total": 0}

    def stat() -> tuple[int, int]:
        return jiffies["busy"], jiffies["total"]

    meter = EnergyMeter(cpus=[TdpCpu(100.0, clock=clock, stat_reader=stat)], clock=clock)
    with meter.window("w") as w:
        clock.advance(2.0)
        jiffies["busy"] += 100
        jiffies["total"] += 200
    m = w.measurement
    assert m.energy_j["cpu:0"] == pytest.approx(100.0)
    assert m.source["cpu:0"] == "estimated"
    assert m.uncertainty_j["cpu:0"] == pytest.approx(50.0)
    assert "estimated:cpu:0" in m.flags
    # Estimated energy is never counted as measured.
    assert m.energy_sum_j(source="measured") == 0.0

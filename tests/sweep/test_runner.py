"""The runner on the simulated engine and GPU: per-phase joules against the engine's known physics."""

from __future__ import annotations

import pytest

from llm_energy.engines.simulated import SimulatedEngine, SimulatedEngineConfig
from llm_energy.env import collect_env
from llm_energy.meters import EnergyMeter, PowerTrace, SimClock, SimulatedGpu
from llm_energy.records import RunResult
from llm_energy.store import Store
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

CONFIG = SimulatedEngineConfig(
    prefill_s_per_token=1e-4,
    decode_step_s=0.01,
    prefill_power_w=650.0,
    decode_power_w=400.0,
    idle_power_w=70.0,
    max_batch_size=8,
)
B, L_IN, L_OUT = 4, 64, 16
TARGET_S = 1.5  # 15 update periods of the simulated GPU: no short-window warning


def _run(
    sim_clock: SimClock,
    sim_gpu: SimulatedGpu,
    *,
    batch_size: int = B,
    output_len: int = L_OUT,
    repeats: int = 1,
    config: SimulatedEngineConfig = CONFIG,
) -> list[RunResult]:
    """Measure one simulated point with the engine, GPU and meter sharing `sim_clock`."""
    engine = SimulatedEngine(config, sim_clock, [sim_gpu])
    engine.load()
    point = make_point(
        model="sim", engine="simulated", batch_size=batch_size, input_len=L_IN, output_len=output_len
    )
    with EnergyMeter([sim_gpu], clock=sim_clock) as meter:
        return run_point(
            engine,
            meter,
            point,
            env=collect_env([sim_gpu]),
            clock=sim_clock,
            options=RunOptions(target_window_s=TARGET_S, repeats=repeats),
        )


def test_prefill_energy_per_repetition_matches_the_engine_physics(sim_clock, sim_gpu):
    """Prefill joules per repetition = P_prefill × B × L_in × s/token, within the stated uncertainty."""
    (result,) = _run(sim_clock, sim_gpu)
    prefill = result.phases["prefill"]
    expected_j = CONFIG.prefill_power_w * B * L_IN * CONFIG.prefill_s_per_token
    assert prefill.energy_j == pytest.approx(expected_j, abs=prefill.uncertainty_j)
    assert prefill.uncertainty_j < 0.1 * expected_j  # the repetitions shrink the relative error
    assert prefill.tokens == B * L_IN
    assert prefill.duration_s == pytest.approx(B * L_IN * CONFIG.prefill_s_per_token)


def test_decode_energy_per_repetition_matches_the_engine_physics(sim_clock, sim_gpu):
    """Decode joules per repetition = P_decode × (L_out − 1) × step time, within the uncertainty."""
    (result,) = _run(sim_clock, sim_gpu)
    decode = result.phases["decode"]
    expected_j = CONFIG.decode_power_w * (L_OUT - 1) * CONFIG.decode_step_s
    assert decode.energy_j == pytest.approx(expected_j, abs=decode.uncertainty_j)
    assert decode.uncertainty_j < 0.15 * expected_j
    assert decode.tokens == B * (L_OUT - 1)


def test_prefill_plus_decode_equals_total(sim_clock, sim_gpu):
    """Invariant: prefill + decode = total per repetition, within the summed uncertainties."""
    (result,) = _run(sim_clock, sim_gpu)
    p, d, t = (result.phases[k] for k in ("prefill", "decode", "total"))
    bound_j = p.uncertainty_j + d.uncertainty_j + t.uncertainty_j
    assert abs(p.energy_j + d.energy_j - t.energy_j) <= bound_j
    truth_j = (
        CONFIG.prefill_power_w * B * L_IN * CONFIG.prefill_s_per_token
        + CONFIG.decode_power_w * (L_OUT - 1) * CONFIG.decode_step_s
    )
    assert t.energy_j == pytest.approx(truth_j, abs=t.uncertainty_j)
    assert t.tokens == B * L_OUT


def test_every_window_lasts_the_target_and_short_prefill_repeats(sim_clock, sim_gpu):
    """Each phase window lasts ≥ target_window_s; a 26 ms prefill is repeated inside its window."""
    (result,) = _run(sim_clock, sim_gpu)
    assert result.status == "ok"
    assert set(result.phases) == {"prefill", "decode", "total"}
    for phase in result.phases.values():
        assert phase.measurement.duration_s >= TARGET_S
        assert not [f for f in phase.measurement.flags if f.startswith("short-window")]
    assert result.phases["prefill"].repetitions > 1
    # the loop stops at the first repetition that reaches the target, not later
    prefill = result.phases["prefill"]
    assert (prefill.repetitions - 1) * prefill.duration_s < TARGET_S


def test_oversized_batch_is_an_oom_result_not_an_exception(sim_clock, sim_gpu):
    """A batch above the engine's memory gives one RunResult with status oom and the message."""
    results = _run(sim_clock, sim_gpu, batch_size=CONFIG.max_batch_size + 8)
    assert len(results) == 1
    (result,) = results
    assert result.status == "oom"
    assert result.error is not None and "batch 16 > 8" in result.error
    assert result.phases == {}
    assert result.config["batch_size"] == 16


def test_repeats_give_distinct_runs_of_the_same_point(sim_clock, sim_gpu):
    """repeats=3 yields three ok RunResults with distinct run_ids and one shared point_id."""
    results = _run(sim_clock, sim_gpu, repeats=3)
    assert len(results) == 3
    assert len({r.run_id for r in results}) == 3
    assert {r.status for r in results} == {"ok"}
    assert len({r.config["point_id"] for r in results}) == 1
    expected_j = CONFIG.decode_power_w * (L_OUT - 1) * CONFIG.decode_step_s
    for r in results:
        assert r.phases["decode"].energy_j == pytest.approx(expected_j, abs=r.phases["decode"].uncertainty_j)


def test_run_result_round_trips_through_the_store(sim_clock, sim_gpu, tmp_store: Store):
    """A runner RunResult (and an oom one) read back from the store equals the one written."""
    (ok,) = _run(sim_clock, sim_gpu)
    (oom,) = _run(sim_clock, SimulatedGpu(sim_clock, PowerTrace.constant(70.0)), batch_size=64)
    tmp_store.write_run(ok)
    tmp_store.write_run(oom)
    assert tmp_store.read_runs() == [ok, oom]
    assert tmp_store.read_runs(status="oom") == [oom]

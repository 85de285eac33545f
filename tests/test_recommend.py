"""Recommendation over profile × batch × clock × replicas candidates, per-class plans, and the CLI.

Profiles: the shared simulated calibration (`sim_profile`, known physics), a synthetic HF-eager one made
from it (3× the energy, 2× the time: the naive baseline), and the bundled default profile (H200 vLLM).
The recommender runs each profile's physical model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.control.dvfs import phase_factors
from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_trace
from llm_energy.modeling.physical import Coefficients
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.recommend import Evaluator, recommend, validation_configs
from llm_energy.recommend.classes import plan_per_class, split_classes


def scaled(profile: EnergyProfile, energy: float, time: float, **meta: str) -> EnergyProfile:
    """A synthetic profile: `profile`'s models with energies × `energy` and times × `time`.

    Both the grid (binned, p1) and the physical model (estimate's default, the recommender's): every
    energy and time coefficient, and the idle power by energy / time.
    """
    g = profile.grid
    grid = dataclasses.replace(
        g,
        prefill_j_per_tok=g.prefill_j_per_tok * energy,
        decode_j_per_tok=g.decode_j_per_tok * energy,
        prefill_s_per_batch=g.prefill_s_per_batch * time,
        decode_s_per_step=g.decode_s_per_step * time,
    )
    phys = profile.physical
    assert phys is not None

    def coef(c: Coefficients) -> Coefficients:
        return Coefficients(tuple(t * time for t in c.time_s), tuple(e * energy for e in c.energy_j))

    physical = dataclasses.replace(
        phys,
        prefill=coef(phys.prefill),
        decode=coef(phys.decode),
        idle_power_w=phys.idle_power_w * energy / time,
    )
    return dataclasses.replace(profile, grid=grid, physical=physical, **meta)


@pytest.fixture(scope="module")
def hf_eager(sim_profile):
    return scaled(sim_profile, 3.0, 2.0, engine="hf", mode="eager")


def test_choice_is_the_cheapest_feasible_and_larger_batches_are_cheaper(sim_profile):
    """Without a binding SLO the largest batch wins; a tight TTFT bound forces a smaller batch."""
    lin, lout = np.full(50, 300), np.full(50, 60)
    # Full batches (load_aware=False): at 1 req/s the load model runs every B at the same concurrency.
    full = {"load_aware": False}
    loose = recommend({"sim": sim_profile}, lin, lout, rate_per_s=1.0, slo_s={"tpot": 1.0}, **full)
    assert loose.choice is not None and loose.choice.batch_size == 16
    assert loose.saving is not None and loose.saving > 0.5
    energies = [c.energy_per_request_j for c in sorted(loose.candidates, key=lambda c: c.batch_size)]
    assert energies == sorted(energies, reverse=True)
    ttft_4 = next(c.ttft_s for c in loose.candidates if c.batch_size == 4)
    tight = recommend({"sim": sim_profile}, lin, lout, rate_per_s=1.0, slo_s={"ttft": ttft_4 * 1.01}, **full)
    assert tight.choice is not None and tight.choice.batch_size == 4
    assert all(c.feasible or c.batch_size > 4 or not c.keeps_up for c in tight.candidates)


def test_candidate_energy_is_the_estimate_and_the_model_runs_once_per_batch(sim_profile):
    """A candidate's J/request is `estimate_trace`'s (its default, physical model) at that batch; clocks
    reuse the model's run of the trace."""
    rng = np.random.default_rng(1)
    lin, lout = rng.integers(100, 2000, 300), rng.integers(20, 120, 300)
    rec = recommend(
        {"sim": sim_profile}, lin, lout, rate_per_s=1.0, slo_s={}, clocks_mhz=[1400, 1600], load_aware=False
    )
    at4 = next(c for c in rec.candidates if c.batch_size == 4 and c.clock_mhz is None)
    assert at4.energy_per_request_j == pytest.approx(
        estimate_trace(lin, lout, sim_profile, batch_size=4).request_mean_j
    )
    ev = Evaluator({"sim": sim_profile}, lin, lout)
    for b in (1, 4, 16):
        for clock in (None, 1400.0):
            ev.candidate("sim", b, clock, lin > 0, 1.0, {}, None)
    assert ev.evaluations == 3


def test_no_feasible_configuration_shows_the_closest_and_bad_input(sim_profile):
    """An impossible SLO gives no choice and a closest candidate; bad rate, metric, GPUs are ConfigErrors."""
    lin, lout = np.full(10, 300), np.full(10, 60)
    rec = recommend({"sim": sim_profile}, lin, lout, rate_per_s=1.0, slo_s={"ttft": 1e-9})
    assert rec.choice is None and rec.saving is None
    assert rec.closest().batch_size == 1  # the smallest batch has the shortest TTFT
    with pytest.raises(ConfigError, match="rate"):
        recommend({"sim": sim_profile}, lin, lout, rate_per_s=0, slo_s={})
    with pytest.raises(ConfigError, match="SLO metric"):
        recommend({"sim": sim_profile}, lin, lout, rate_per_s=1, slo_s={"latency": 1.0})
    with pytest.raises(ConfigError, match="--gpus"):
        recommend({"sim": sim_profile}, lin, lout, rate_per_s=1, slo_s={}, max_gpus=0)
    with pytest.raises(ConfigError, match="at least one profile"):
        recommend({}, lin, lout, rate_per_s=1, slo_s={})


def test_hf_eager_profile_is_the_naive_baseline_at_largest_feasible_and_batch_1(sim_profile, hf_eager):
    """With an HF-eager profile the baselines are it at its largest feasible batch and at batch 1; the saving
    against it lies inside its bounds; validation gets both configurations."""
    lin, lout = np.full(48, 400), np.full(48, 80)  # full batches of 16: HF pads no partial tail
    rec = recommend(
        {"fast": sim_profile, "hf": hf_eager},
        lin,
        lout,
        rate_per_s=1.0,
        slo_s={"tpot": 1.0},
        load_aware=False,
    )
    first, second = rec.baselines
    assert "HF eager" in first.label and "largest feasible" in first.label
    assert first.candidate.profile == "hf" and first.candidate.largest_feasible
    assert first.candidate.batch_size == 16
    assert second.candidate.batch_size == 1 and "batch 1" in second.label
    assert rec.choice is not None and rec.choice.profile == "fast"
    assert rec.saving == pytest.approx(2 / 3, rel=0.05)  # 3× the energy at the same (largest) batch
    low, high = rec.saving_range() or (0, 0)
    assert low < rec.saving < high
    assert rec.kwh_per_day_saved() > 0
    chosen, baseline = validation_configs(rec)
    assert (chosen.engine, chosen.batch_size, chosen.profile) == ("simulated", 16, "fast")
    assert (baseline.engine, baseline.mode, baseline.batch_size, baseline.profile) == (
        "hf",
        "eager",
        16,
        "hf",
    )
    without = recommend({"fast": sim_profile}, lin, lout, rate_per_s=1.0, slo_s={"tpot": 1.0})
    assert "no HF-eager profile" in without.baselines[0].label
    assert without.baseline.batch_size == 1


def test_modelled_clocks_follow_the_dvfs_factors_and_bad_clocks_are_refused(sim_profile):
    """A lower clock scales prefill time and per-phase energy by the DVFS model; candidates say `modelled`."""
    lin, lout = np.full(20, 512), np.full(20, 128)
    rec = recommend({"sim": sim_profile}, lin, lout, rate_per_s=0.1, slo_s={}, clocks_mhz=[1400, 1980])
    assert {c.clock_mhz for c in rec.candidates} == {None, 1400.0}  # the maximum is the default clock
    base = next(c for c in rec.candidates if c.batch_size == 16 and c.clock_mhz is None)
    low = next(c for c in rec.candidates if c.batch_size == 16 and c.clock_mhz == 1400.0)
    f = phase_factors(1400, 1980)
    # Continuous TTFT: the request's own prefill (prefill factor) + the decode step it joins (decode factor).
    assert low.ttft_s - low.tpot_s == pytest.approx((base.ttft_s - base.tpot_s) * f.prefill_time)
    assert low.tpot_s == pytest.approx(base.tpot_s * f.decode_time)
    assert low.source == "modelled (DVFS)" and base.source == "profile"
    assert low.energy_per_request_j < base.energy_per_request_j  # decode-heavy work saves energy
    assert any("memory-bound" in n for n in rec.notes)
    with pytest.raises(ConfigError, match="outside the supported range"):
        recommend({"sim": sim_profile}, lin, lout, rate_per_s=1, slo_s={}, clocks_mhz=[2500])
    odd = dataclasses.replace(sim_profile, gpu_name="Mystery GPU")
    with pytest.raises(ConfigError, match="maximum SM clock"):
        recommend({"x": odd}, lin, lout, rate_per_s=1, slo_s={}, clocks_mhz=[1000])
    ok = recommend({"x": odd}, lin, lout, rate_per_s=1, slo_s={}, clocks_mhz=[1000], max_clock_mhz=2000)
    assert any(c.clock_mhz == 1000 for c in ok.candidates)


def test_replicas_serve_a_rate_one_gpu_cannot(sim_profile):
    """A rate above one replica's capacity is infeasible on one GPU and met with replicas given --gpus."""
    lin, lout = np.full(20, 512), np.full(20, 128)
    one = recommend({"sim": sim_profile}, lin, lout, rate_per_s=1.0, slo_s={})
    capacity = max(c.throughput_per_s for c in one.candidates)
    rate = 3.5 * capacity
    assert recommend({"sim": sim_profile}, lin, lout, rate_per_s=rate, slo_s={}).choice is None
    many = recommend({"sim": sim_profile}, lin, lout, rate_per_s=rate, slo_s={}, max_gpus=8)
    assert many.choice is not None and many.choice.replicas == 4 and many.choice.gpus == 4
    assert many.choice.throughput_per_s >= rate


def test_classes_split_at_the_percentiles_and_the_plan_beats_the_single_best(sim_profile):
    """Classes split at p33/p66; a tight TTFT only long inputs break makes the plan use a big batch for
    short inputs and a small one for long: cheaper than the one configuration meeting every class."""
    rng = np.random.default_rng(3)
    lin = np.concatenate(
        [rng.integers(100, 200, 300), rng.integers(400, 600, 300), rng.integers(1800, 2000, 300)]
    )
    lout = rng.integers(30, 120, lin.size)
    split = split_classes(lin, lout)
    assert split.input_thresholds == pytest.approx(tuple(np.percentile(lin, [33, 66])))
    assert (split.input_class[lin <= split.input_thresholds[0]] == 0).all()
    assert (split.input_class[lin > split.input_thresholds[1]] == 2).all()
    ev = Evaluator({"sim": sim_profile}, lin, lout, load_aware=False)  # full batches, as the plan below
    long_b16 = ev.candidate("sim", 16, None, lin > 1000, 0.1, {}, None)
    short_b16 = ev.candidate("sim", 16, None, lin < 300, 0.1, {}, None)
    assert long_b16 is not None and short_b16 is not None
    ttft = (long_b16.ttft_s + short_b16.ttft_s) / 2  # batch 16 meets it for short inputs only
    plan = plan_per_class(
        {"sim": sim_profile}, lin, lout, rate_per_s=0.5, slo_s={"ttft": ttft}, load_aware=False
    )
    assert sum(c.requests for c in plan.classes) == lin.size
    assert plan.complete and plan.single_label is not None
    by_input = {c.name.split("/")[0]: c.recommendation.choice for c in plan.classes}
    assert by_input["short-in"] is not None and by_input["short-in"].batch_size == 16
    assert by_input["long-in"] is not None and by_input["long-in"].batch_size < 16
    saving = plan.saving()
    assert saving is not None and saving[0] > 0.05 and saving[1] < saving[0] < saving[2]
    data = plan.to_dict()
    assert data["thresholds"]["input_p33_p66"] == pytest.approx(list(split.input_thresholds))
    assert "33rd/66th percentiles" in str(data["thresholds"]["rule"])


def test_dynamollm_preset_sets_the_ttft_per_input_class(sim_profile):
    """The preset gives 250/400/2000 ms TTFT by input class and 100 ms TPOT; SLO and preset are exclusive."""
    rng = np.random.default_rng(4)
    lin, lout = rng.integers(100, 2000, 600), rng.integers(20, 120, 600)
    plan = plan_per_class({"sim": sim_profile}, lin, lout, rate_per_s=0.5, preset="dynamollm")
    for c in plan.classes:
        expected = {"short": 0.25, "medium": 0.4, "long": 2.0}[c.name.split("-")[0]]
        assert c.slo_s == {"ttft": expected, "tpot": 0.1}
    with pytest.raises(ConfigError, match="not both"):
        plan_per_class({"sim": sim_profile}, lin, lout, rate_per_s=1, slo_s={}, preset="dynamollm")
    with pytest.raises(ConfigError, match="unknown SLO preset"):
        plan_per_class({"sim": sim_profile}, lin, lout, rate_per_s=1, preset="fastest")


def test_cli_recommend_on_bundled_profile(tmp_path, sim_profile, hf_eager):
    """Text and JSON on the bundled profile (per class, carbon, price, clocks); exit 1 and 2 where due."""
    runner = CliRunner()
    ok = runner.invoke(app, ["recommend", "--trace", "azure-conv", "--slo", "ttft=2s,tpot=100ms"])
    assert ok.exit_code == 0, ok.output
    assert "saving vs" in ok.output and "no HF-eager profile" in ok.output
    js = runner.invoke(
        app,
        ["recommend", "--trace", "azure-code", "--slo-preset", "dynamollm", "--carbon-intensity", "france"]
        + ["--price", "0.2", "--gpu-clocks-mhz", "1600", "--gpus", "4", "--json"],
    )
    assert js.exit_code in (0, 1), js.output
    data = json.loads(js.stdout)
    assert data["slo_s"] == {"ttft": 0.25, "tpot": 0.1}
    assert data["carbon"]["g_per_kwh"] == 56 and "2023" in data["carbon"]["source"]
    assert len(data["per_class"]["classes"]) >= 3
    fp = (data["choice"] or data["closest"])["footprint"]
    assert fp["co2_kg_per_1000_requests"] == pytest.approx(fp["kwh_per_1000_requests"] * 0.056)
    assert fp["cost_per_day"] == pytest.approx(fp["kwh_per_day"] * 0.2)
    hf_path = tmp_path / "hf.json"
    hf_eager.save(hf_path)
    sim_path = tmp_path / "sim.json"
    sim_profile.save(sim_path)
    both = runner.invoke(
        app, ["recommend", "--profile", str(sim_path), "--profile", str(hf_path), "--rate", "0.5", "--json"]
    )
    assert both.exit_code == 0, both.output
    assert "HF eager" in json.loads(both.stdout)["baseline"]
    impossible = runner.invoke(app, ["recommend", "--slo", "ttft=1ms"])
    assert impossible.exit_code == 1 and "closest" in impossible.output
    for bad in (
        ["--slo", "ttft=fast"],
        ["--slo", "ttft=2s", "--slo-preset", "dynamollm"],
        ["--slo-preset", "nope"],
        ["--profile", "no-such-profile"],
        ["--gpu-clocks-mhz", "fast"],
        ["--gpu-clocks-mhz", "5000"],
        ["--carbon-intensity", "mars"],
        ["--price", "-1"],
    ):
        result = runner.invoke(app, ["recommend", *bad])
        assert result.exit_code == 2, (bad, result.output)

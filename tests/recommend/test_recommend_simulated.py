"""`recommend --scorer simulate`: candidates simulated on the trace's arrivals (real CLI and simulator)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.modeling.profile import load_profile
from llm_energy.recommend.simulated import pareto, recommend_by_simulation

runner = CliRunner()
WINDOW = (0.0, 120.0)


def test_the_choice_is_the_least_energy_that_meets_the_slo_and_the_frontier_is_undominated():
    profiles = {n: load_profile(n) for n in ("h200-llama-3.1-8b-vllm", "h100-llama-3.1-8b-hf-eager")}
    rec = recommend_by_simulation(
        "azure-conv", profiles, gpus=2, slo_s={"ttft": 2.0, "tpot": 0.1}, window=WINDOW
    )
    assert rec.choice is not None and rec.choice.meets_slo
    meeting = [c for c in rec.candidates if c.meets_slo]
    assert rec.choice.energy_per_request_j == min(c.energy_per_request_j for c in meeting)
    assert rec.runner_up is not None and rec.runner_up.energy_per_request_j >= rec.choice.energy_per_request_j
    assert any("static batching" in s for s in rec.skipped)  # HF eager cannot be simulated as continuous
    for a in rec.frontier:
        assert not any(
            b.energy_per_request_j < a.energy_per_request_j and b.e2e_p90_s < a.e2e_p90_s
            for b in rec.candidates
        )
    # Two instances at this low rate idle twice the silicon: never cheaper per request than one.
    one = min(c.energy_per_request_j for c in rec.candidates if c.instances == 1)
    two = min(c.energy_per_request_j for c in rec.candidates if c.instances == 2)
    assert two > one
    assert pareto([]) == []


def test_cli_writes_json_and_a_slo_nobody_meets_exits_1():
    ok = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0:120", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["scorer"] == "simulate" and data["choice"]["meets_slo"] and data["window"] == [0.0, 120.0]
    none = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0:120", "--slo", "ttft=1ms"])
    assert none.exit_code == 1
    assert "no simulated configuration meets the SLO on azure-conv" in none.output


def test_bad_scorer_and_window_are_one_line_errors():
    bad = runner.invoke(app, ["recommend", "--scorer", "magic"])
    assert bad.exit_code == 2 and "unknown --scorer 'magic'; valid: model, simulate" in bad.output
    win = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "ten"])
    assert win.exit_code == 2 and "bad --window 'ten': expected START:DURATION" in win.output

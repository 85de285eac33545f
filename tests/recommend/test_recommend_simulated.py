"""`recommend --scorer simulate`: candidates simulated on the trace's arrivals (real CLI and simulator)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.errors import ConfigError
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
    ok = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0,120", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["scorer"] == "simulate" and data["choice"]["meets_slo"] and data["window"] == [0.0, 120.0]
    none = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0,120", "--slo", "ttft=1ms"])
    assert none.exit_code == 1
    assert "no simulated configuration meets the SLO on azure-conv" in none.output


def test_bad_scorer_and_window_are_one_line_errors():
    bad = runner.invoke(app, ["recommend", "--scorer", "magic"])
    assert bad.exit_code == 2 and "unknown --scorer 'magic'; valid: model, simulate" in bad.output
    win = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "ten"])
    assert win.exit_code == 2 and "bad --window 'ten': expected START,DURATION" in win.output


def test_online_check_replays_choice_and_runner_up_through_real_servers():
    """The choice and the runner-up are launched (stub servers on 127.0.0.1 here: no GPU) and sent the same
    trace window; without a GPU the check is latency only and says so."""
    from llm_energy.recommend.online_check import check_online
    from llm_energy.serving.loadgen import schedule_from_trace
    from llm_energy.serving.servers.stub import stub_server
    from llm_energy.workloads import load_trace

    profiles = {"h200-llama-3.1-8b-vllm": load_profile("h200-llama-3.1-8b-vllm")}
    rec = recommend_by_simulation("azure-conv", profiles, gpus=1, slo_s={"ttft": 2.0}, window=(0.0, 4.0))
    launched = []

    def servers(c):
        launched.append((c.max_num_seqs, c.instances))
        return [stub_server(token_delay_s=0.0005) for _ in range(c.instances)]

    checks = check_online(rec, "azure-conv", slo_s={"ttft": 2.0}, servers=servers)
    assert [c.role for c in checks] == ["choice", "runner-up"]
    assert launched[0] == (rec.choice.max_num_seqs, rec.choice.instances)
    sent = len(schedule_from_trace(load_trace("azure-conv"), 1.0, (0.0, 4.0)))
    for c in checks:
        assert c.requests_ok == sent and c.measured_energy_per_request_j is None and c.energy_ratio is None
        assert "no GPU metered here: latency only" in c.notes
        assert c.measured_ttft_p90_s is not None and c.measured_ttft_p90_s < 2.0


def test_validate_online_without_a_gpu_is_one_clear_error():
    res = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0,60", "--validate-online"])
    assert res.exit_code == 2
    assert (
        "--validate-online replays through vLLM on this machine's GPUs, and there is none here" in res.output
    )


def test_online_check_compares_whole_replays_on_a_common_span():
    """With a metered (simulated, 300 W) GPU, each check carries the whole replay's energy and span, and the
    common span fills the faster replay's remaining time at its idle power."""
    import time

    from llm_energy.meters.simulated import constant_gpu_on
    from llm_energy.recommend.online_check import check_online, common_span, replay_energy
    from llm_energy.serving.servers.stub import stub_server

    profiles = {"h200-llama-3.1-8b-vllm": load_profile("h200-llama-3.1-8b-vllm")}
    rec = recommend_by_simulation("azure-conv", profiles, gpus=1, slo_s={"ttft": 2.0}, window=(0.0, 4.0))
    gpu, _ = constant_gpu_on(time.perf_counter, power_w=300.0)
    # The runner-up streams 60x slower: its replay (one request, 44 tokens) lasts ~1.3 s against ~0.02 s, far
    # beyond the ~0.5 s a first request to a fresh stub took on a loaded 2-core CI machine.
    delays = iter([0.0005, 0.03])

    def servers(c):
        return [stub_server(token_delay_s=next(delays))]

    checks = check_online(rec, "azure-conv", slo_s={"ttft": 2.0}, servers=servers, gpus=[gpu], idle_s=0.2)
    fast, slow = checks
    for c in checks:
        assert c.replay_energy_j is not None and c.replay_span_s is not None and c.requests_sent > 0
        # a constant 300 W GPU: the replay's joules are 300 W x its metered seconds
        assert abs(c.replay_energy_j - 300.0 * c.replay_span_s) <= 0.05 * c.replay_energy_j
        assert c.idle_power_w is not None and abs(c.idle_power_w - 300.0) < 15.0
    assert slow.replay_span_s > fast.replay_span_s
    span = common_span(checks)
    # the slower replay is the span: its own figure is its whole replay per request
    assert abs(span["runner-up"] - slow.replay_energy_j / slow.requests_sent) < 1e-9
    expected_fast = (fast.replay_energy_j + (slow.replay_span_s - fast.replay_span_s) * fast.idle_power_w) / (
        fast.requests_sent
    )
    assert abs(span["choice"] - expected_fast) < 1e-9
    assert replay_energy([], [(0.0, 1.0, 5.0)]) is None
    assert common_span([]) == {}


def test_the_online_table_says_whether_the_choice_held_on_the_common_span(capsys):
    """The rendered check: each role's common-span J/request, and the verdict from them (real records)."""
    from dataclasses import replace

    from llm_energy.cli.recommend_sim import _render_checks
    from llm_energy.recommend.online_check import OnlineCheck

    profiles = {"h200-llama-3.1-8b-vllm": load_profile("h200-llama-3.1-8b-vllm")}
    rec = recommend_by_simulation("azure-conv", profiles, gpus=1, slo_s={"ttft": 2.0}, window=(0.0, 60.0))
    base = OnlineCheck("choice", rec.choice, 40.0, 0.1, 0.01, 100.0, 10, (), 400.0, 30.0, 100.0, 10)
    # runner-up: 380 J over 36 s; the choice: 400 J over 30 s + 6 s x 100 W idle = 1,000 J -> 100 J/request
    checks = [
        base,
        replace(base, role="runner-up", candidate=rec.runner_up, replay_energy_j=380.0, replay_span_s=36.0),
    ]
    _render_checks(checks)
    out = " ".join(capsys.readouterr().out.split())
    assert "the choice measured 100.0 J/request, the runner-up 38.0: the recommendation does not hold" in out
    _render_checks([replace(checks[0], replay_energy_j=300.0, replay_span_s=36.0), checks[1]])
    out = " ".join(capsys.readouterr().out.split())
    assert "the choice measured 30.0 J/request, the runner-up 38.0: the recommendation holds" in out


def test_a_replay_that_misses_the_slo_neither_sets_the_common_span_nor_wins(capsys):
    """The runner-up queued (40% within the SLO) for 90 s: the choice is not charged 60 s of idle for it, and
    a cheaper runner-up that missed the SLO does not overturn the choice; a choice that missed it never holds.
    The grid report (benchmarks/recommend_online_report.py) uses the same rule."""
    from dataclasses import replace

    from llm_energy.cli.recommend_sim import _render_checks
    from llm_energy.recommend.online_check import OnlineCheck, common_span, common_span_s, verdict

    profiles = {"h200-llama-3.1-8b-vllm": load_profile("h200-llama-3.1-8b-vllm")}
    rec = recommend_by_simulation("azure-conv", profiles, gpus=1, slo_s={"ttft": 2.0}, window=(0.0, 60.0))
    choice = OnlineCheck("choice", rec.choice, 40.0, 0.1, 0.01, 100.0, 10, (), 400.0, 30.0, 100.0, 10)
    queued = replace(
        choice, role="runner-up", candidate=rec.runner_up, measured_attainment_pct=40.0,
        replay_energy_j=350.0, replay_span_s=90.0,
    )  # fmt: skip
    span = common_span([choice, queued])
    assert span == {"choice": pytest.approx(40.0), "runner-up": pytest.approx(35.0)}
    assert verdict([choice, queued]) == "holds"
    _render_checks([choice, queued])
    out = " ".join(capsys.readouterr().out.split())
    assert "the runner-up 35.0 (runner-up missed the SLO): the recommendation holds" in out
    # the choice missed it: it does not hold, however little it cost
    late = replace(choice, measured_attainment_pct=98.9, replay_energy_j=10.0)
    assert verdict([late, replace(queued, measured_attainment_pct=100.0)]) == "does not hold"
    # nobody met it: the longest replay is the span, as before
    assert common_span_s([30.0, 90.0], [False, False]) == 90.0
    assert common_span_s([], []) == 0.0
    assert verdict([choice]) is None


def test_online_launch_serves_each_candidate_in_its_own_profiles_mode():
    """A choice from the H200 eager profile and a runner-up from the CUDA-graphs one (as on the 4x Azure conv
    window) are each launched in their own mode with their profile's chunk, not both in the choice's mode."""
    from llm_energy.cli.recommend_sim import launch_settings
    from llm_energy.recommend.simulated import SimRecommendation

    names = ("h200-llama-3.1-8b-vllm", "h200-llama-3.1-8b-vllm-eager")
    rec = recommend_by_simulation(
        "azure-conv", {n: load_profile(n) for n in names}, gpus=1, slo_s={"ttft": 2.0}, window=(0.0, 4.0)
    )
    best = {
        n: min((c for c in rec.candidates if c.profile == n), key=lambda c: c.energy_per_request_j)
        for n in names
    }
    mixed = SimRecommendation(rec.candidates, best[names[1]], best[names[0]], [], rec.window, [])
    launch = launch_settings(mixed)
    assert launch["h200-llama-3.1-8b-vllm"].mode == "cudagraphs"
    assert launch["h200-llama-3.1-8b-vllm-eager"].mode == "eager"
    assert all(how.max_num_batched_tokens == 16384 for how in launch.values())
    odd = SimRecommendation(
        rec.candidates, replace(best[names[0]], profile="h100-llama-3.1-8b-hf-eager"), None, [], None, []
    )
    with pytest.raises(ConfigError, match="launches vLLM; h100-llama-3.1-8b-hf-eager is a hf profile"):
        launch_settings(odd)


def test_without_profile_the_simulated_recommendation_weighs_cuda_graphs_and_eager():
    """The default candidates are both H200 vLLM profiles: each appears in the JSON, and an unknown profile
    given instead is one clear line, exit 2."""
    res = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0,30", "--json"])
    assert res.exit_code == 0, res.output
    profiles = {c["profile"] for c in json.loads(res.stdout)["candidates"]}
    assert profiles == {"h200-llama-3.1-8b-vllm", "h200-llama-3.1-8b-vllm-eager"}
    modes = {c["profile"]: c["mode"] for c in json.loads(res.stdout)["candidates"]}
    assert modes == {"h200-llama-3.1-8b-vllm": "cudagraphs", "h200-llama-3.1-8b-vllm-eager": "eager"}
    table = runner.invoke(
        app, ["recommend", "--scorer", "simulate", "--window", "0,30"], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "h200-llama-3.1-8b-vllm (cudagraphs) · max_num_seqs" in table.output  # the mode its name lacks
    assert "eager (eager)" not in table.output
    bad = runner.invoke(app, ["recommend", "--scorer", "simulate", "--window", "0,30", "--profile", "nope"])
    assert bad.exit_code == 2 and "no profile 'nope': not a file and not a bundled name" in bad.output

"""The cluster simulation against the physical model it is built on: conservation, single-request timing,
KV admission and preemption, the policies, the synthetic day and the replay-shaped summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llm_energy.modeling.physical import causal_pairs
from llm_energy.modeling.profile import load_profile
from llm_energy.serving.metrics import steady_state_window, summarise
from llm_energy.simulate import SimConfig, day_curve, records_of, simulate, synthetic_day
from llm_energy.simulate.results import steady_window
from llm_energy.workloads import load_trace

PROFILE = "h100-llama-3.1-8b-vllm"


def _trace(tmp_path: Path, rows: list[tuple[float, int, int]]) -> str:
    """A Mooncake-layout CSV: (arrival seconds, input tokens, output tokens) per request."""
    path = tmp_path / "trace.csv"
    lines = ["timestamp_ms,input_length,output_length"]
    lines += [f"{t * 1000:.3f},{i},{o}" for t, i, o in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _tiny_kv_profile(tmp_path: Path, kv_tokens: int) -> str:
    data = load_profile(PROFILE).to_dict()
    data["physical"]["kv_capacity_tokens"] = float(kv_tokens)
    path = tmp_path / "tiny-kv.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_every_request_finishes_or_fails_and_energy_is_conserved():
    """Each request ends (finished or failed); total = busy + idle gaps + parked = idle + dynamic + parked."""
    r = simulate(SimConfig(profile=PROFILE, window=(0.0, 120.0), gpus=4, policy="dynamic", time_scale=2.0))
    t, e = r.table, r.totals
    assert t is not None
    assert np.isfinite(t.done_s).all()
    assert r.summary.ok + r.summary.failed == len(t) == r.summary.requests
    ok = ~t.failed
    assert (t.done_s[ok] >= t.first_s[ok]).all() and (t.first_s[ok] >= t.arrival_s[ok]).all()
    assert e.total_j == pytest.approx(e.busy_j + e.idle_gaps_j + e.parked_j, rel=1e-12)
    assert e.total_j == pytest.approx(e.idle_j + e.dynamic_j + e.parked_j, rel=1e-12)
    assert e.busy_j > 0 and e.idle_gaps_j > 0 and e.dynamic_j > 0


def test_one_request_takes_its_prefill_pass_then_out_minus_one_steps_at_batch_one(tmp_path):
    """TTFT = the prefill pass; E2E = it + Σ decode steps at batch 1 (context input + j); energy the sum."""
    lin, lout = 1000, 50
    r = simulate(
        SimConfig(profile=PROFILE, trace=_trace(tmp_path, [(0.0, lin, lout)]), gpus=1, policy="single")
    )
    model = load_profile(PROFILE).physical
    assert model is not None
    pre_s, pre_j = model.prefill_pass(lin, causal_pairs(lin), 1.0)
    steps_s, steps_j = model.decode_step(np.ones(lout - 1), lin + np.arange(1, lout))
    assert r.summary.ttft is not None and r.summary.e2e is not None
    assert r.summary.ttft.p50_s == pytest.approx(float(pre_s), rel=1e-9)
    assert r.summary.e2e.p50_s == pytest.approx(float(pre_s + steps_s.sum()), rel=1e-9)
    assert r.totals.total_j == pytest.approx(float(pre_j + steps_j.sum()), rel=1e-9)
    assert r.totals.idle_gaps_j == 0.0


def test_a_second_request_joins_at_the_next_step_boundary(tmp_path):
    """An arrival during a decode leap waits for the step in progress, then prefills beside the decode."""
    lin = 500
    r = simulate(
        SimConfig(
            profile=PROFILE,
            trace=_trace(tmp_path, [(0.0, lin, 200), (0.5, lin, 10)]),
            gpus=1,
            policy="single",
        )
    )
    t = r.table
    assert t is not None
    model = load_profile(PROFILE).physical
    assert model is not None
    step_s = float(model.decode_step(1, lin + 200)[0])
    wait = t.first_s[1] - t.arrival_s[1]
    pre_s = float(model.prefill_pass(lin, causal_pairs(lin), 1.0)[0])
    # one mixed forward pays one per-forward constant (the smaller), not both
    mixed_s = (
        pre_s + float(model.decode_step(1, lin + 1)[0]) - max(model.prefill.time_s[0], model.decode.time_s[0])
    )
    assert mixed_s < wait < mixed_s + step_s  # the rest of the step in progress, then one mixed iteration


def test_kv_capacity_admits_preempts_and_refuses(tmp_path):
    """600-token cache: requests that fit alone run (the newest preempted on overflow); a bigger one fails."""
    rows = [(0.0, 200, 200)] * 3 + [(0.0, 500, 200)]
    r = simulate(SimConfig(trace=_trace(tmp_path, rows), profile=_tiny_kv_profile(tmp_path, 600), gpus=1))
    t = r.table
    assert t is not None
    assert t.failed.tolist() == [False, False, False, True]
    assert r.preemptions > 0 and t.preemptions.sum() == r.preemptions
    assert r.summary.ok == 3
    assert (t.done_s[:3] > t.first_s[:3]).all()


def test_dynamic_uses_no_more_energy_than_single_at_low_load():
    """At the trace's own (low) rate on 8 GPUs the dynamic policy spends less than the all-on baseline."""
    window = (0.0, 180.0)
    single = simulate(SimConfig(profile=PROFILE, window=window, gpus=8, policy="single"))
    dynamic = simulate(SimConfig(profile=PROFILE, window=window, gpus=8, policy="dynamic"))
    assert dynamic.totals.total_j <= single.totals.total_j
    assert dynamic.totals.gpu_hours < single.totals.gpu_hours
    assert dynamic.summary.slo_attainment_pct == 100.0


def test_plan_file_and_per_class_pools(tmp_path):
    """A JSON plan runs as written; per-class pools serve their own classes only."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"pools": [
        {"name": "small", "classes": ["short", "medium"], "instances": 1, "tp": 1, "clock_mhz": 1380},
        {"name": "big", "classes": ["long"], "instances": 1, "tp": 2},
    ]}))  # fmt: skip
    r = simulate(SimConfig(profile=PROFILE, window=(0.0, 60.0), gpus=3, policy=str(plan)))
    assert r.plan == ["small: 1 × TP1 @1380 MHz", "big: 1 × TP2 @max MHz"]
    assert any(label.startswith("assumed") for label in r.labels)
    assert any(label.startswith("clocks modelled") for label in r.labels)
    per = simulate(SimConfig(profile=PROFILE, window=(0.0, 60.0), gpus=3, policy="per-class"))
    assert per.table is not None
    for c in range(3):
        assert len(set(per.table.instance[per.table.klass == c].tolist())) == 1


def test_summary_matches_replay_metrics_on_the_same_records():
    """The column summary and window equal `serving.metrics.summarise` / `steady_state_window`."""
    slo = {"ttft": 0.05, "tpot": 0.1}
    r = simulate(SimConfig(profile=PROFILE, window=(0.0, 60.0), gpus=1, time_scale=2.0, slo_s=slo))
    assert r.table is not None
    records = records_of(r.table)
    window = steady_state_window(records)
    assert steady_window(r.table) == window
    ref = summarise(records, slo, window)
    s = r.summary
    assert (s.requests, s.ok, s.failed, s.output_tokens) == (
        ref.requests,
        ref.ok,
        ref.failed,
        ref.output_tokens,
    )
    assert s.ttft == ref.ttft and s.e2e == ref.e2e
    assert s.tpot is not None and ref.tpot is not None
    assert s.tpot.p90_s == pytest.approx(ref.tpot.p90_s, rel=1e-12)
    assert s.slo_attainment_pct == ref.slo_attainment_pct
    assert 0 < s.slo_attainment_pct < 100
    assert s.request_throughput_per_s == ref.request_throughput_per_s


@pytest.mark.parametrize(
    ("name", "peak_mean", "peak_valley"), [("conversation", 1.7, 3.3), ("coding", 2.8, 34.6)]
)
def test_day_curves_have_dynamollm_ratios(name, peak_mean, peak_valley):
    """The built-in curves peak at DynamoLLM's peak/mean and peak/valley, with mean 1."""
    curve = day_curve(name)
    assert curve.relative_rate.mean() == pytest.approx(1.0)
    assert curve.peak_to_mean() == pytest.approx(peak_mean, rel=1e-3)
    assert curve.peak_to_valley() == pytest.approx(peak_valley, rel=1e-3)


def test_synthetic_day_keeps_the_hours_mean_rate_and_lengths():
    """A synthetic day arrives at the hour's mean rate over 24 h, with lengths drawn from the hour."""
    hour = load_trace("azure-code")
    day = synthetic_day(hour, day_curve("coding"), np.random.default_rng(0))
    rate = hour.summary().rate_per_s
    assert rate is not None and day.arrival_s is not None
    assert len(day) / 86400.0 == pytest.approx(rate, rel=0.01)
    assert set(day.input_tokens.tolist()) <= set(hour.input_tokens.tolist())
    busiest = np.histogram(day.arrival_s, bins=24, range=(0, 86400))[0]
    assert busiest.max() / busiest.mean() > 2.0


def test_simulate_imports_only_layers_below_it():
    """simulate (layer 5) never imports cli, recommend or report (DESIGN.md's layers)."""
    import ast

    import llm_energy.simulate as pkg

    above = ("llm_energy.cli", "llm_energy.recommend", "llm_energy.report", "llm_energy.validation")
    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            assert not [n for n in names if n.startswith(above)], (path.name, names)

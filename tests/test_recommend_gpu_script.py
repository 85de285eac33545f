"""benchmarks/recommend_gpu.py --smoke: recommend, validate and rank a grid on the simulated engine (CPU)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("recommend_gpu")


def test_smoke_validates_ranks_resumes_and_respects_the_budget(tmp_path, script):
    """(a) choice b16 vs baseline b1 measured; (b) b4 added, the choice ranks first of the three; a second
    command reuses every run; a budget of 0 s skips everything and says so."""
    first = tmp_path / "first"
    assert script.main(["--out-dir", str(first), "--smoke"]) == 0
    res = json.loads((first / "results.json").read_text())
    val = res["validation"]
    assert (val["chosen"]["batch_size"], val["baseline"]["batch_size"]) == (16, 1)
    assert val["measured_saving"] > 0.5
    assert val["chosen"]["requests"] == val["baseline"]["requests"] == 60
    acc = res["accuracy"]
    assert [r["batch_size"] for r in acc["measured"]] == [16, 4, 1]  # sorted by measured J/request
    assert (acc["rank"], acc["of"], acc["ratio_to_best"]) == (1, 3, 1.0)
    assert sorted(p.name for p in (first / "runs").iterdir()) == [
        "simulated-default-b1.json",
        "simulated-default-b16.json",
        "simulated-default-b4.json",
    ]
    assert json.loads((first / "recommendation.json").read_text())["choice"]["batch_size"] == 16
    assert "accuracy" in (first / "recommend_gpu.log").read_text()

    again = tmp_path / "again"
    assert (
        script.main(["--out-dir", str(again), "--smoke", "--budget-s", "0", "--reuse", str(first / "runs")])
        == 0
    )
    res2 = json.loads((again / "results.json").read_text())
    assert res2["skipped"] == {}
    assert res2["accuracy"]["measured"] == acc["measured"]

    broke = tmp_path / "broke"
    assert script.main(["--out-dir", str(broke), "--smoke", "--budget-s", "0"]) == 1
    res3 = json.loads((broke / "results.json").read_text())
    assert "validation" not in res3 and set(res3["skipped"]) == {"validation", "sim b4", "sim b16"}
    assert not list((broke / "runs").iterdir())


def test_the_h100_plan_fits_nine_minutes_with_the_measured_loads(script):
    """With vLLM loads as measured on the H100 (≤ 90 s), the modelled plan fits the 500 s budget; the
    150 s budgeted per load makes the script drop HF eager batch 16 (last) rather than overrun."""
    from llm_energy.modeling.profile import load_profile
    from llm_energy.validation.offline import sample_requests
    from llm_energy.workloads import load_trace

    drawn, _ = sample_requests(load_trace("azure-conv"), 300, max_input_tokens=2048, max_output_tokens=128)
    need = {}
    for name, batch in script.H100_GRID:
        prof = load_profile(name)
        run_s = script.estimate_run_s(
            prof, batch, drawn.input_tokens, drawn.output_tokens, prof.engine == "hf"
        )
        need[name, batch] = run_s
    load_s = {"vllm": 90.0, "hf": 20.0}
    total = sum(load_s[load_profile(n).engine] + 3 + s for (n, _), s in need.items())
    assert total < 500
    assert max(need, key=need.get) == script.H100_GRID[-1]  # the slowest run is measured last

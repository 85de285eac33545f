"""The axes GPU script's smoke run: every part on the CPU with tiny shapes and a simulated meter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "axes_gpu.py"


def test_smoke_runs_every_part_and_writes_json(benchmark_script, tmp_path: Path) -> None:
    summary = benchmark_script("axes_gpu").main([str(tmp_path), "--smoke"])
    on_disk = json.loads((tmp_path / "axes.json").read_text())
    assert (tmp_path / "axes.log").stat().st_size > 0
    assert on_disk["skipped"] == summary["skipped"] == []

    decoding = {(r["series"], r["batch"]): r for r in on_disk["decoding"]}
    assert set(decoding) == {(s, b) for s in ("greedy", "sample", "top-p", "beam2") for b in (1, 2)}
    assert all(r["status"] == "ok" and r["j_per_output_token"] > 0 for r in decoding.values())
    beam = decoding[("beam2", 2)]
    assert beam["decode_tokens_computed"] == 2 * beam["decode_tokens_returned"] == 2 * 2 * 5

    spec = on_disk["speculative"]
    ratios = {(r["series"], r["batch"]): r for r in spec["ratios"]}
    assert set(ratios) == {(s, b) for s in ("spec-agree", "spec-random") for b in (1, 2)}
    assert all(ratios[("spec-agree", b)]["acceptance_rate"] == 1.0 for b in (1, 2))
    assert all(ratios[("spec-random", b)]["acceptance_rate"] < 0.5 for b in (1, 2))
    assert [c["status"] for c in spec["components"]] == ["ok", "ok"]
    per_alpha = spec["model"]["per_alpha"]
    assert [e["alpha"] for e in per_alpha] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert per_alpha[0]["tokens_per_round"] == pytest.approx((1 - 0.5**3) / 0.5)  # γ = 2 in the smoke
    # The headline model takes the draft's cost from the α = 1 decodes; the isolated window's is kept.
    # (On the simulated meter a tiny decode can read less than its verifications: then no draft cost.)
    if spec["model"]["draft_cost"] == "from the spec-agree decodes":
        assert spec["model_isolated_draft"]["per_alpha"][0]["alpha"] == 0.5
    else:
        assert spec["model"]["draft_cost"].startswith("isolated") and "model_isolated_draft" not in spec

    moe = on_disk["moe"]
    assert {(r["series"], r["batch"]) for r in moe["rows"] if r["status"] == "ok"} == {
        (m, b) for m in ("tiny-olmoe", "tiny-olmo", "tiny-olmo-wide") for b in (1, 2)
    }
    router = moe["router"]
    assert router["experts"] == 8 and len(router["layers"]) == 2
    for layer in router["layers"]:
        assert 0 <= layer["min_share"] <= 1 / 8 <= layer["max_share"] <= 1
        assert 1 <= layer["experts_touched_per_step"]["1"] <= 2  # one token picks top_k = 2 experts


def test_report_prints_every_table_from_the_json(
    benchmark_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    benchmark_script("axes_gpu").main([str(tmp_path), "--smoke"])
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import axes_report
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert axes_report.main([str(tmp_path / "axes.json")]) == 0
    text = capsys.readouterr().out
    for heading in (
        "## Decoding strategies",
        "## Speculative decoding",
        "## MoE vs dense",
        "from the α = 1 decode",
    ):
        assert heading in text
    crossover_rows = [line for line in text.splitlines() if line.startswith("| 0.9 |")]
    assert len(crossover_rows) == 1
    header = next(line for line in text.splitlines() if line.startswith("| α |"))
    # α, one cell per batch with a draft cost, two crossovers: as many cells as the header names. (Which
    # batches have a draft cost from the α = 1 decode depends on CPU timings here: one or both.)
    assert crossover_rows[0].count("|") == header.count("|") >= 5


def test_only_runs_the_selected_points_and_builds_only_what_they_need(
    benchmark_script, tmp_path: Path
) -> None:
    """`--only` measures exactly the listed series:batch points; unselected MoE models are not even built."""
    summary = benchmark_script("axes_gpu").main(
        [str(tmp_path), "--smoke", "--only", "beam2:2", "plain-greedy:1", "spec-random:1", "tiny-olmo:2"]
    )
    got = {(r["series"], r["batch"]) for r in summary["decoding"] + summary["speculative"]["rows"]}
    got |= {(r["series"], r["batch"]) for r in summary["moe"]["rows"]}
    assert got == {("beam2", 2), ("plain-greedy", 1), ("spec-random", 1), ("tiny-olmo", 2)}
    assert list(summary["moe"]["builds_s"]) == ["tiny-olmo"]
    assert summary["speculative"]["components"] == []
    (ratio,) = summary["speculative"]["ratios"]  # spec-random against the plain run of the same call
    assert ratio["batch"] == 1 and ratio["decode_energy_ratio"] > 1


def test_only_rejects_a_point_without_a_batch(benchmark_script, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        benchmark_script("axes_gpu").main([str(tmp_path), "--smoke", "--only", "beam2"])
    assert exc.value.code == 2

"""benchmarks/headline_binned.py and calibration_time_prior.py on the committed H200 calibration (CPU).

Both reproduce the figures headline.md and model-accuracy-h200.md quote from the raw files: a change to the
models or the planner that moves them shows here before the docs go stale.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RAW = Path(__file__).resolve().parents[1] / "docs" / "results" / "2026-12-02-h200-calibrate-hf-eager-and-vllm"
HEADLINE = RAW.parent / "2026-12-02-h200-headline"


def test_the_binned_estimate_and_the_check_against_the_measured_run(benchmark_script, capsys):
    module = benchmark_script("headline_binned")
    out = module.main(
        [
            "--hf-profile", str(RAW / "h200-llama-3.1-8b-hf-eager.json"),
            "--vllm-profile", str(RAW / "h200-llama-3.1-8b-vllm-cudagraphs.json"),
            "--headline-dir", str(HEADLINE),
        ]
    )  # fmt: skip
    seed_method = {
        r["trace"]: r for r in out["estimates"] if r["method"] == "binned" and r["batch"] == "own largest"
    }
    assert seed_method["azure-conv"]["saving_pct"] == pytest.approx(28.1, abs=0.05)
    assert seed_method["azure-code"]["saving_pct"] == pytest.approx(16.3, abs=0.05)
    assert seed_method["azure-conv"]["requests"] == 18_803  # input ≤ 8,192 and output ≤ 512
    for r in out["estimates"]:  # the range holds the figure
        assert r["low_pct"] <= r["saving_pct"] <= r["high_pct"]
    # five padded HF batches and two vLLM samples; the predicted saving of that run within 0.6 points
    assert len(out["headline_check"]) == 7
    for row in out["headline_saving"]:
        assert abs(row["predicted_pct"] - row["measured_pct"]) < 0.6
    assert "| azure-conv (18,803 of 19,366) | binned | own largest |" in capsys.readouterr().out


def test_the_planner_predicts_hf_eager_from_its_own_engine(benchmark_script):
    module = benchmark_script("calibration_time_prior")
    out = module.main(
        [str(RAW / "runs.csv"), "--engine", "hf", "--prior", "h100-llama-3.1-8b-hf-eager",
         "--prior", "h200-llama-3.1-8b-vllm"]
    )  # fmt: skip
    assert out["points"] == 26 and out["measured_s"] == pytest.approx(430, abs=1)
    assert out["priors"]["h100-llama-3.1-8b-hf-eager"]["total_ratio"] == pytest.approx(0.93, abs=0.01)
    assert out["priors"]["h200-llama-3.1-8b-vllm"]["total_ratio"] < 0.7  # another engine's prior: far short

"""`llm-energy calibrate` and the estimate options of the physical model, through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.modeling.profile import load_profile

runner = CliRunner()


def test_dry_run_plans_long_contexts_at_small_batches_within_the_budget():
    result = runner.invoke(app, ["calibrate", "--gpu", "NVIDIA H200", "--gpu-minutes", "7", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "calibration plan on NVIDIA H200" in result.output
    assert "131056" in result.output  # the longest context the model holds, at batch 1
    minutes = float(result.output.split("predicted GPU time ")[1].split(" min")[0])
    assert minutes <= 7


def test_the_plan_predicts_from_the_closest_bundled_profile_and_whole_window_repetitions():
    """HF eager on the H200 is planned from the HF eager profile, not vLLM's: 4 GPU-minutes no longer take all
    28 points (they took ~9 minutes on the H200: model-accuracy-h200.md); the choice is named."""
    from llm_energy.modeling.profile import closest_bundled_profile
    from llm_energy.sweep.calibrate import _window_s

    args = ["calibrate", "--engine", "hf", "--mode", "eager", "--gpu", "NVIDIA H200", "--max-input", "8192"]
    four = runner.invoke(app, [*args, "--gpu-minutes", "4", "--dry-run"], env={"COLUMNS": "200"})
    assert four.exit_code == 0, four.output
    assert "from the bundled profile h200-llama-3.1-8b-hf-eager" in four.output
    points = int(four.output.split("(given): ")[1].split(" points")[0])
    assert 5 <= points < 28
    assert closest_bundled_profile("hf", "eager", "llama-3.1-8b", "NVIDIA H100 80GB HBM3") == (
        "h100-llama-3.1-8b-hf-eager"
    )
    assert (
        closest_bundled_profile("vllm", "eager", "llama-3.1-8b", "NVIDIA H200")
        == "h200-llama-3.1-8b-vllm-eager"
    )
    assert closest_bundled_profile("hf", "cudagraphs", "tiny", "NVIDIA H200") == "h200-llama-3.1-8b-vllm"
    # a 0.9-s phase in a 1-s window runs twice; a 0.3-s one four times
    assert _window_s(0.9, 1.0) == 1.8 and abs(_window_s(0.3, 1.0) - 1.2) < 1e-12


def test_a_budget_too_small_and_a_missing_gpu_are_clear_errors(monkeypatch):
    small = runner.invoke(app, ["calibrate", "--gpu", "NVIDIA H200", "--gpu-minutes", "1", "--dry-run"])
    assert small.exit_code == 2
    assert "fits only" in small.output and "raise --gpu-minutes" in small.output
    unknown = runner.invoke(app, ["calibrate", "--gpu", "TPU v9", "--dry-run"])
    assert unknown.exit_code == 2 and "no published peaks for GPU 'TPU v9'" in unknown.output
    bad = runner.invoke(app, ["calibrate", "--gpu", "NVIDIA H200", "--gpu-minutes", "-3", "--dry-run"])
    assert bad.exit_code == 2 and "--gpu-minutes must be in (0, 1440]" in bad.output


def test_calibrate_on_the_simulated_engine_measures_fits_and_writes_a_profile(tmp_path):
    out, db = tmp_path / "p.json", tmp_path / "r.db"
    args = ["calibrate", "--engine", "simulated", "--gpu", "NVIDIA H200", "--gpu-minutes", "3",
            "--window-s", "1.0", "--db", str(db), "-o", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "leave-one-out over every point" in result.output
    prof = load_profile(out)
    assert prof.physical is not None and prof.points >= 5
    again = runner.invoke(app, args)  # resumable: every point is already stored
    assert again.exit_code == 0, again.output
    assert load_profile(out).points == prof.points


def test_estimate_warns_on_stderr_and_strict_range_refuses(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("input_tokens,output_tokens\n512,64\n60000,64\n")
    cols = [
        "--input-col",
        "input_tokens",
        "--output-col",
        "output_tokens",
        "--profile",
        "h100-llama-3.1-8b-vllm",
    ]
    ok = runner.invoke(app, ["estimate", "--trace", str(trace), *cols, "--json"])
    assert ok.exit_code == 0
    assert "50.0% of requests" in ok.stderr and "outside the calibrated range" in ok.stderr
    data = json.loads(ok.stdout)
    assert data["outside_calibration"] == 1 and data["outside_energy_share"] > 0.5
    strict = runner.invoke(app, ["estimate", "--trace", str(trace), *cols, "--strict-range"])
    assert strict.exit_code == 2 and "row 2: 60000 input / 64 output" in strict.output


def test_estimate_rescales_to_a_target_gpu_and_refuses_an_unknown_one():
    base = runner.invoke(app, ["estimate", "--profile", "h100-llama-3.1-8b-vllm", "--json"])
    target = ["--target-gpu", "NVIDIA H200", "--json"]
    moved = runner.invoke(app, ["estimate", "--profile", "h100-llama-3.1-8b-vllm", *target])
    assert base.exit_code == moved.exit_code == 0
    b, m = json.loads(base.stdout), json.loads(moved.stdout)
    assert m["total_j"] < b["total_j"]  # more bandwidth at the same power and FLOP/s
    assert "rescaled from NVIDIA H100" in m["profile"]
    bad = runner.invoke(app, ["estimate", "--target-gpu", "TPU v9"])
    assert bad.exit_code == 2 and "no published peaks for GPU 'TPU v9'" in bad.output

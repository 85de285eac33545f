"""Runs without a GPU say what was measured and what was estimated, everywhere they are shown.

A CPU-only run has no GPU energy: export leaves those columns empty (NaN, never 0.0 J) beside the CPU
figure and its source, the sweep's progress bar labels the CPU estimate, the report's method says no
GPU was metered, and a small sweep's dry run says "< 1 min", not "≤ 0 min".
"""

from __future__ import annotations

import math
import re
import shlex

import pandas as pd
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.meters import detect_cpus

pytest.importorskip("torch")

TINY_CPU = shlex.split(
    "measure --model tiny --device cpu --batch-size 1 --input-len 16 --output-len 4 --window-s 0.2 --idle-s 0"
)
SPEC = """\
models: [tiny]
engines: [{engine: hf}]
batch_sizes: [1, 2]
input_lens: [8]
output_lens: [2]
device: cpu
window_s: 0.2
idle_s: 0
"""


@pytest.fixture(scope="module")
def cpu_db(tmp_path_factory):
    """One real tiny-model run on the CPU and one simulated-GPU run, in one database."""
    db = tmp_path_factory.mktemp("cpu") / "runs.db"
    runner = CliRunner()
    for args in (TINY_CPU, ["measure", "--engine", "simulated", "--model", "sim", "--input-len", "64"]):
        result = runner.invoke(app, [*args, "--db", str(db)])
        assert result.exit_code == 0, result.output
    return db


def _cpu_source() -> str:
    (cpu,), _ = detect_cpus()
    return str(cpu.source)


def test_export_leaves_gpu_energy_empty_without_a_gpu(cpu_db, tmp_path):
    out = tmp_path / "runs.csv"
    result = CliRunner().invoke(app, ["export", str(out), "--db", str(cpu_db)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    cpu = frame[frame["engine"] == "hf"].iloc[0]
    gpu = frame[frame["engine"] == "simulated"].iloc[0]
    for phase in ("prefill", "decode", "total"):
        for metric in ("energy_j", "uncertainty_j", "energy_per_token_j", "mean_power_w"):
            assert math.isnan(cpu[f"{phase}_{metric}"]), (phase, metric)  # unknown, not 0.0 J
        assert pd.isna(cpu[f"{phase}_gpu_source"])
        assert cpu[f"{phase}_cpu_energy_j"] > 0
        assert cpu[f"{phase}_cpu_source"] == _cpu_source()
        assert gpu[f"{phase}_energy_j"] > 0 and gpu[f"{phase}_gpu_source"] == "measured"


def test_the_report_method_says_no_gpu_was_metered(cpu_db, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", "-o", str(out), "--db", str(cpu_db)])
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", out.read_text())
    method = text[text.index("<h2>Method</h2>") :][:1500]
    assert "No GPU was metered in 1 of the 2 runs" in method
    assert "GPU energy columns are empty (not 0 J)" in method
    cpu_only_db = tmp_path / "cpu.db"
    assert CliRunner().invoke(app, [*TINY_CPU, "--db", str(cpu_only_db)]).exit_code == 0
    result = CliRunner().invoke(app, ["report", "-o", str(out), "--db", str(cpu_only_db)])
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", out.read_text())
    method = text[text.index("<h2>Method</h2>") :][:800]
    assert "No GPU was metered in these runs" in method
    assert "NVML" not in method
    assert "no successful run with GPU energy to plot" in text


def test_sweep_progress_labels_the_cpu_estimate(tmp_path):
    spec = tmp_path / "cpu.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(
        app, ["sweep", str(spec), "--db", str(tmp_path / "r.db")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert re.search(rf"last [0-9.e+-]+ J/token \(CPU, {_cpu_source()}\)", result.output), result.output
    assert "last 0 J/token" not in result.output


def test_dry_run_of_a_short_sweep_says_under_a_minute(tmp_path):
    spec = tmp_path / "cpu.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "estimated wall time < 1 min" in result.output
    assert "≤ 0 min" not in result.output
    long = SPEC.replace("device: cpu\n", "").replace("window_s: 0.2", "window_s: 30")
    spec.write_text(long)
    result = CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"], env={"COLUMNS": "200"})
    assert re.search(r"estimated GPU time ≤ [0-9]+ min", result.output), result.output

"""`llm-energy simulate` on the command line: JSON output, and bad inputs as one line with exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_json_output_parses_and_holds_the_replay_keys(runner, tmp_path):
    records = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["simulate", "--window", "0,30", "--gpus", "3", "--policy", "per-class", "--json",
              "--carbon-intensity", "100", "--price", "0.2", "--records", str(records)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["simulated"] is True and "simulated" in data["labels"]
    assert {"summary", "energy", "totals", "footprint", "notes"} <= set(data)
    assert data["summary"]["requests"] == data["summary"]["ok"] > 0
    assert data["totals"]["co2_kg"] == pytest.approx(data["totals"]["kwh"] * 0.1)
    assert records.read_text().count("\n") == data["summary"]["requests"] + 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--policy", "fastest"], "--policy 'fastest'"),
        (["--day", "weekend"], "--day 'weekend'"),
        (["--slo", "ttft=2"], "ttft=2"),
        (["--slo", "speed=2s"], "speed"),
        (["--profile", "no-such-profile"], "no-such-profile"),
        (["--trace", "no-such-trace.csv"], "no-such-trace.csv"),
        (["--gpus", "0"], "--gpus"),
        (["--time-scale", "-1"], "--time-scale"),
        (["--window", "abc"], "--window"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(runner, args, named):
    result = runner.invoke(app, ["simulate", *args, "--json"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and named in lines[0]
    assert result.stdout.strip() == "" or "error:" in result.stdout


def test_a_plan_that_needs_more_gpus_than_given_exits_2(runner, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"pools": [{"classes": "all", "instances": 2, "tp": 4}]}))
    result = runner.invoke(app, ["simulate", "--policy", str(plan), "--gpus", "4", "--json"])
    assert result.exit_code == 2
    assert "needs 8 GPUs" in result.output

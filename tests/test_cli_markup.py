"""User-supplied strings reach the console as typed: rich never reads them as markup.

A model, sweep, trace or file name holding `[/x]` used to crash rich (MarkupError) and one holding
`[bold]x[/bold]` was rendered bold (the brackets vanished).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app

NAMES = ["[bold]x[/bold]", "a[/x]b", "m[red]"]


def _text(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("name", NAMES)
def test_a_model_name_with_brackets_is_printed_as_typed(runner, tmp_path, name):
    db = tmp_path / "r.db"
    args = ["measure", "--engine", "simulated", "--model", name, "--batch-size", "2", "--input-len", "32"]
    result = runner.invoke(app, [*args, "--output-len", "4", "--db", str(db)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert name in result.output


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_model_with_brackets_is_one_escaped_error(runner, tmp_path, name):
    result = runner.invoke(app, ["measure", "--model", name, "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert name in result.output


@pytest.mark.parametrize("name", NAMES)
def test_sweep_names_and_paths_with_brackets_are_printed_as_typed(runner, tmp_path, name):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": name,
                "models": [name],
                "engines": [{"engine": "simulated"}],
                "batch_sizes": [1],
                "input_lens": [8],
                "output_lens": [2],
                "window_s": 1.0,
                "idle_s": 0,
            }
        )
    )
    dry = runner.invoke(app, ["sweep", str(spec), "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output
    assert f"sweep {name}" in dry.output and name in dry.output.split("\n", 2)[-1]
    db = tmp_path / "[red]runs[x].db"
    done = runner.invoke(app, ["sweep", str(spec), "--db", str(db)], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    assert str(db) in done.output


def test_export_to_a_path_with_brackets(runner, tmp_path):
    db = tmp_path / "r.db"
    runner.invoke(app, ["measure", "--engine", "simulated", "--model", "sim", "--db", str(db)])
    out = tmp_path / "[bold]runs[red].csv"
    result = runner.invoke(app, ["export", str(out), "--db", str(db)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert str(out) in result.output


def test_a_missing_trace_with_brackets_is_one_escaped_error(runner, tmp_path):
    missing = str(tmp_path / "[/x].csv")
    result = runner.invoke(app, ["validate", "--trace", missing, "--engine", "simulated"])
    assert result.exit_code == 2, result.output
    assert "[/x].csv" in result.output
    assert "Traceback" not in result.output

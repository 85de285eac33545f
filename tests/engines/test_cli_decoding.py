"""Decoding options reach the engine from the CLI; a bad one exits 2 before anything is measured."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm_energy.cli import app

BASE = [
    "measure",
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--batch-size",
    "2",
    "--input-len",
    "16",
    "--output-len",
    "4",
    "--window-s",
    "0.3",
    "--idle-s",
    "0.3",
]


def test_beam_search_from_the_cli_is_recorded(tmp_path):
    """--decoding beam --num-beams 2 runs and the stored config names the strategy."""
    result = CliRunner().invoke(
        app, [*BASE, "--decoding", "beam", "--num-beams", "2", "--db", str(tmp_path / "r.db"), "--json"]
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)[0]
    assert run["config"]["options"] == {"decoding": "beam", "num_beams": 2}
    assert run["config"]["engine_facts"]["decoding"] == "beam"


def test_bad_decoding_exits_2_without_a_database(tmp_path):
    """An unknown strategy is named in one error; no database file is created."""
    result = CliRunner().invoke(app, [*BASE, "--decoding", "bogus", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 2
    assert "decoding" in result.output
    assert not (tmp_path / "r.db").exists()

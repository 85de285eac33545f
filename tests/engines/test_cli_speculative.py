"""`measure --draft-model --lookahead --spec-agree` runs hf-spec; bad values exit 2 before loading."""

from __future__ import annotations

import json
from pathlib import Path

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
    "0.2",
    "--idle-s",
    "0.2",
    "--no-total",
]


def test_speculative_measure_records_acceptance(tmp_path: Path) -> None:
    args = [
        *BASE,
        "--draft-model",
        "tiny",
        "--lookahead",
        "2",
        "--spec-agree",
        "--db",
        str(tmp_path / "r.db"),
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)[0]
    assert run["config"]["engine"] == "hf-spec"
    assert run["config"]["options"] == {"draft_model": "tiny", "lookahead": 2, "spec_agree": True}
    assert run["config"]["engine_facts"]["speculative"]["acceptance_rate"] == 1.0


def test_bad_speculative_input_exits_2(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "r.db")]
    for extra, needle in (
        (["--draft-model", "tiny", "--lookahead", "0"], "got 0"),
        (["--draft-model", "qwen2.5-0.5b"], "151936"),
        (["--lookahead", "3"], "--draft-model"),
    ):
        result = CliRunner().invoke(app, [*BASE, *extra, *db])
        assert result.exit_code == 2, (extra, result.output)
        assert needle in result.output, (extra, result.output)

"""At 80 columns the CLI's tables fold what does not fit: no identifier or number is cut to "…".

A folded cell continues on the next line of the same column, so `_column_text` joins a column's
cells over all lines to read an identifier back whole.
"""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console
from typer.testing import CliRunner

from llm_energy.architectures import architecture_names
from llm_energy.cli import app
from llm_energy.report.tables import runs_table

NARROW = {"COLUMNS": "80"}
LONG_MODEL = "my-organisation/llama-3.1-70b-instruct-finetuned-v2"


def _column_text(output: str, index: int) -> str:
    """The text of column `index` of a rich table, every data line's cell joined in order."""
    cells = []
    for line in output.splitlines():
        if line.startswith("│"):
            cells.append(line.split("│")[index + 1].strip())
    return "".join(cells)


def test_models_at_80_columns_shows_every_name_whole():
    result = CliRunner().invoke(app, ["models"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for name in architecture_names():
        assert name in result.output  # short enough to stay on one line at 80 columns


def test_sweep_dry_run_folds_a_long_model_name_instead_of_cutting_it(tmp_path):
    spec = tmp_path / "long.yaml"
    spec.write_text(
        f"models: [{LONG_MODEL}]\nengines: [{{engine: simulated}}]\nbatch_sizes: [1, 64]\n"
        "input_lens: [2048]\noutput_lens: [128]\n"
    )
    result = CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert _column_text(result.output, 0) == LONG_MODEL * 2
    ids = _column_text(result.output, 6)
    assert len(ids) == 32 and all(c in "0123456789abcdef" for c in ids)


def test_measure_table_at_80_columns_cuts_nothing(tmp_path):
    args = [
        "measure",
        "--engine",
        "simulated",
        "--model",
        LONG_MODEL,
        "--batch-size",
        "4",
        "--input-len",
        "64",
    ]
    result = CliRunner().invoke(app, [*args, "--db", str(tmp_path / "r.db")], env=NARROW)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert "measured" in _column_text(result.output, 7)  # the source column, folded not cut


def test_report_runs_table_folds_identifiers():
    frame = pd.DataFrame(
        {
            "model": [LONG_MODEL],
            "engine": ["vllm"],
            "mode": ["cudagraphs"],
            "batch_size": [64],
            "input_len": [2048],
            "output_len": [128],
            "status": ["ok"],
            "total_energy_j": [1234.5],
            "total_tokens": [8192],
            "total_duration_s": [3.2],
        }
    )
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(runs_table(frame))
    text = console.export_text()
    assert "…" not in text
    assert LONG_MODEL in _column_text(text, 0)

"""The results store as the commands open it: readers never create a database; foreign files exit 2."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.store import Store

READERS = {
    "fit": ["fit", "-o", "{tmp}/profile.json"],
    "export": ["export", "{tmp}/runs.csv"],
    "report": ["report", "-o", "{tmp}/report.html"],
    "plot": ["plot", "energy-vs-batch", "-o", "{tmp}/plot.png"],
    "tp-compare": ["tp-compare", "--model", "tiny", "--gpus", "2", "--total-batch", "4"],
    "compare": ["compare", "--profile", "h100-llama-3.1-8b-vllm"],
}


def _invoke(args: list[str], tmp_path: Path, db: Path) -> tuple[int, list[str]]:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--db", str(db)]
    result = CliRunner().invoke(app, argv)
    return result.exit_code, result.stderr.strip().splitlines()


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_reading_command_on_a_missing_database_exits_2_and_creates_nothing(tmp_path, command):
    """A typo in --db is bad input: exit 2, one line naming the path, and no file or folder appears."""
    db = tmp_path / "typo" / "runs.db"
    code, lines = _invoke(READERS[command], tmp_path, db)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert str(db) in lines[0] and "no such file" in lines[0]
    assert not db.parent.exists()


@pytest.mark.parametrize("command", ["export", "fit", "report"])
def test_an_empty_file_is_not_a_store_for_readers_and_stays_empty(tmp_path, command):
    db = tmp_path / "empty.db"
    db.touch()
    code, lines = _invoke(READERS[command], tmp_path, db)
    assert code == 2, lines
    assert lines == [f"error: cannot read results store {db}: it is an empty file, not a store"]
    assert db.stat().st_size == 0


def _foreign(path: Path) -> bytes:
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE contacts (name TEXT)")
        raw.commit()
    return path.read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        READERS["export"],
        [
            "measure",
            "--engine",
            "simulated",
            "--model",
            "sim",
            "--batch-size",
            "1",
            "--input-len",
            "8",
            "--output-len",
            "2",
        ],
    ],
    ids=["reader", "writer"],
)
def test_a_database_that_is_not_ours_exits_2_in_one_line_untouched(tmp_path, args):
    """The README's exit status 2 for 'a database that is not ours', for readers and writers alike."""
    db = tmp_path / "contacts.db"
    before = _foreign(db)
    code, lines = _invoke(args, tmp_path, db)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert str(db) in lines[0] and "another application" in lines[0]
    assert db.read_bytes() == before


def test_a_text_file_as_database_exits_2(tmp_path):
    db = tmp_path / "runs.db"
    db.write_text("run_id,energy_j\n")
    code, lines = _invoke(READERS["export"], tmp_path, db)
    assert code == 2
    assert lines == [f"error: cannot open results store {db}: it is not a SQLite database"]


def test_a_reader_reads_an_existing_store_without_writing_to_it(tmp_path):
    db = tmp_path / "runs.db"
    with Store(db):
        pass
    before = db.read_bytes()
    code, lines = _invoke(READERS["export"], tmp_path, db)
    assert code == 0, lines
    assert (tmp_path / "runs.csv").exists()
    assert db.read_bytes() == before

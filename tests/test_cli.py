"""The command line through typer's CliRunner: exit codes, JSON output, the store it writes."""

from __future__ import annotations

import json
import shlex
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.meters import detect_cpus
from llm_energy.store import Store

SIM = shlex.split("measure --engine simulated --model sim --batch-size 4 --input-len 64 --output-len 16")
TINY_CPU = shlex.split(
    "measure --model tiny --device cpu --batch-size 1 --input-len 16 --output-len 4 "
    "--window-s 0.3 --idle-s 0.3"
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _text(output: str) -> str:
    """Collapse whitespace: rich wraps long messages at the console width."""
    return " ".join(output.split())


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _cpu_source() -> str:
    """How this machine's CPU energy is obtained: `measured` (RAPL) or `estimated` (TDP)."""
    (cpu,), _ = detect_cpus()
    return cpu.source


def _measure_sim(runner: CliRunner, db: Path) -> list[dict]:
    result = runner.invoke(app, [*SIM, "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_models_lists_the_bundled_architectures(runner):
    """`models` names every bundled architecture, in the table and in --json."""
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0, table.output
    for name in ("llama-3.1-8b", "qwen2.5-0.5b", "tiny"):
        assert name in table.stdout
    as_json = runner.invoke(app, ["models", "--json"])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert {"llama-3.1-8b", "qwen2.5-0.5b", "tiny"} <= {r["name"] for r in rows}
    tiny = next(r for r in rows if r["name"] == "tiny")
    assert tiny["context"] == 4096
    assert tiny["params"] > 0


def test_measure_simulated_json_has_phases_and_stores_one_run(runner, tmp_path):
    """--json writes only JSON (prefill, decode, total per run) and the run lands in the database."""
    db = tmp_path / "r.db"
    (run,) = _measure_sim(runner, db)
    assert run["status"] == "ok"
    assert {"prefill", "decode", "total"} <= set(run["phases"])
    p, d, t = (run["phases"][k] for k in ("prefill", "decode", "total"))
    assert t["energy_j"] == pytest.approx(
        p["energy_j"] + d["energy_j"], abs=p["uncertainty_j"] + d["uncertainty_j"] + t["uncertainty_j"]
    )
    assert p["tokens"] == 4 * 64 and d["tokens"] == 4 * 15 and t["tokens"] == 4 * 16
    with Store(db) as store:
        stored = store.read_runs()
    assert [r.run_id for r in stored] == [run["run_id"]]


def test_unknown_model_exits_2_listing_names_and_creates_no_database(runner, tmp_path):
    """A bad model name is a usage error (exit 2) naming the valid models; no file is created."""
    db = tmp_path / "sub" / "r.db"
    result = runner.invoke(app, ["measure", "--model", "nope", "--db", str(db)])
    assert result.exit_code == 2
    text = _text(result.output)
    assert "nope" in text
    for name in ("llama-3.1-8b", "qwen2.5-0.5b", "tiny"):
        assert name in text
    assert not db.exists()
    assert not db.parent.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input-len", "0"], "input_len"),
        (["--input-len", "5000", "--output-len", "10"], "4096"),
        (["--mode", "turbo"], "eager, compiled, cudagraphs"),
    ],
    ids=["zero-input", "over-context", "unknown-mode"],
)
def test_invalid_measure_options_exit_2_before_touching_the_store(runner, tmp_path, args, expected):
    """Impossible lengths and unknown modes exit 2 with a message naming the limit or the choices."""
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["measure", "--model", "tiny", *args, "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert expected in _text(result.output)
    assert not db.exists()


def test_locked_database_fails_with_locked_and_keeps_earlier_rows(runner, tmp_path):
    """A database locked by another connection makes measure fail saying 'locked'; rows survive."""
    db = tmp_path / "r.db"
    (first,) = _measure_sim(runner, db)
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        result = runner.invoke(app, [*SIM, "--db", str(db)])
        other.execute("ROLLBACK")
    assert result.exit_code == 1
    assert "locked" in _text(result.output)
    with Store(db) as store:
        (kept,) = store.read_runs()
    assert kept.run_id == first["run_id"]
    assert kept.phases["decode"].energy_j == pytest.approx(first["phases"]["decode"]["energy_j"])


def test_measure_tiny_on_cpu_says_energy_is_estimated(runner, tmp_path):
    """The real HF engine on the CPU runs end to end; without a GPU or RAPL it says ESTIMATED."""
    pytest.importorskip("torch")
    estimated = _cpu_source() == "estimated"  # no readable RAPL counter (the case on this CI machine)
    db = tmp_path / "r.db"
    result = runner.invoke(app, [*TINY_CPU, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert ("Energy is ESTIMATED" in _text(result.output)) == estimated
    with Store(db) as store:
        (run,) = store.read_runs()
    assert run.status == "ok"
    assert run.config["device"] == "cpu" and run.config["dtype"] == "float32"
    assert {"prefill", "decode", "total"} <= set(run.phases)
    for phase in ("prefill", "decode", "total"):
        sources = set(run.phases[phase].measurement.source.values())
        assert sources == ({"estimated"} if estimated else {"measured"})


def test_export_writes_csv_and_parquet_rows_and_rejects_xlsx(runner, tmp_path):
    """export writes one row per stored run as CSV or Parquet; an unknown suffix exits 2."""
    db = tmp_path / "r.db"
    ids = {_measure_sim(runner, db)[0]["run_id"] for _ in range(2)}
    csv, parquet, xlsx = tmp_path / "out.csv", tmp_path / "out.parquet", tmp_path / "out.xlsx"
    for out in (csv, parquet):
        result = runner.invoke(app, ["export", str(out), "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert "wrote 2 runs" in _text(result.output)
    for frame in (pd.read_csv(csv), pd.read_parquet(parquet)):
        assert set(frame["run_id"]) == ids
        assert (frame["status"] == "ok").all()
        assert (frame["decode_energy_j"] > 0).all()
    result = runner.invoke(app, ["export", str(xlsx), "--db", str(db)])
    assert result.exit_code == 2
    assert ".xlsx" in _text(result.output)
    assert not xlsx.exists()


def test_env_json_reports_no_gpu_and_estimated_cpu(runner):
    """Without a GPU, env --json says gpu_count 0 and notes that there is no GPU and CPU is estimated."""
    if _has_cuda():
        pytest.skip("this machine has a GPU")
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["gpu_count"] == 0
    assert info["gpus"] == []
    notes = " ".join(info["notes"])
    assert "no GPU" in notes
    if _cpu_source() == "estimated":
        assert "CPU energy is ESTIMATED" in notes
        assert info["cpu_meters"] == ["TdpCpu(estimated: cpu:0)"]

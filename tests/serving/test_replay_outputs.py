"""`llm-energy replay`: outputs checked before anything starts, results kept when storing fails,
vLLM sized from the trace, progress on stderr, one energy-window warning."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import warnings
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llm_energy.architectures import load_architecture
from llm_energy.cli import app
from llm_energy.errors import MeasurementWarning
from llm_energy.meters import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.records import Request
from llm_energy.serving import StubConfig, StubServer
from llm_energy.serving.replay_run import replay_servers
from llm_energy.serving.servers import ExternalServer
from llm_energy.serving.servers.vllm import max_model_len_for

REPLAY = ["replay", "--trace", "azure-code", "--num-requests", "20", "--time-scale", "20", "--idle-s", "0"]


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def _foreign(path: Path) -> bytes:
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE contacts (name TEXT)")
        raw.commit()
    return path.read_bytes()


def test_a_database_that_is_not_ours_fails_before_a_single_request(tmp_path):
    """--db is opened first: a foreign database exits 2 in one line and the server never sees a request."""
    db = tmp_path / "contacts.db"
    before = _foreign(db)
    with StubServer() as stub:
        t0 = time.monotonic()
        result = CliRunner().invoke(app, [*REPLAY, "--url", stub.url, "--db", str(db)])
        assert stub.max_in_flight == 0
    assert result.exit_code == 2
    assert (
        len(_lines(result.stderr)) == 1
        and str(db) in result.stderr
        and "another application" in result.stderr
    )
    assert time.monotonic() - t0 < 10
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("records", "expected"),
    [("missing-dir/records.csv", "no such directory {parent}"), (".", "it is a directory")],
    ids=["missing-folder", "a-folder"],
)
def test_an_unwritable_records_path_fails_before_a_single_request(tmp_path, records, expected):
    path = tmp_path / records
    with StubServer() as stub:
        result = CliRunner().invoke(app, [*REPLAY, "--url", stub.url, "--records", str(path)])
        assert stub.max_in_flight == 0
    assert result.exit_code == 2
    assert _lines(result.stderr) == [f"error: --records {path}: {expected.format(parent=path.parent)}"]


def test_a_run_that_cannot_be_stored_still_writes_its_json_and_records(tmp_path):
    """The database is locked while the replay runs: storing fails (exit 1, 'locked'), but the JSON on
    stdout and the per-request records are written first."""
    db, records = tmp_path / "runs.db", tmp_path / "records.csv"
    with StubServer(StubConfig(token_delay_s=0.01)) as stub:
        cmd = [sys.executable, "-m", "llm_energy", *REPLAY, "--time-scale", "5", "--url", stub.url]
        cmd += ["--db", str(db), "--records", str(records), "--json"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while stub.max_in_flight == 0 and time.monotonic() < deadline:  # the store was opened before
            time.sleep(0.02)
        with closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            out, err = proc.communicate(timeout=120)
            other.execute("ROLLBACK")
    assert proc.returncode == 1, err
    assert "locked" in _lines(err)[-1] and str(db) in _lines(err)[-1]
    payload = json.loads(out)
    assert payload["summary"]["requests"] == 20
    assert len(pd.read_csv(records)) == 20


def _lengths_csv(tmp_path: Path, rows: list[tuple[int, int]]) -> Path:
    path = tmp_path / "lengths.csv"
    lines = ["timestamp,input_length,output_length"]
    lines += [f"{i * 100},{inp},{out}" for i, (inp, out) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            [],
            "request 1 of the replay (4000 input + 200 output tokens) needs 4200 tokens, over tiny's context",
        ),
        (["--max-model-len", "1000"], "needs 4200 tokens, over --max-model-len of 1000"),
    ],
    ids=["over-context", "over-max-model-len"],
)
def test_vllm_is_refused_before_starting_when_a_request_does_not_fit(tmp_path, extra, expected):
    trace = _lengths_csv(tmp_path, [(100, 10), (4000, 200), (50, 5)])
    args = ["replay", "--server", "vllm", "--model", "tiny", "--trace", str(trace), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    (line,) = _lines(result.stderr)
    assert expected in line


def test_max_model_len_is_sized_from_the_longest_request_and_says_so():
    tiny = load_architecture("tiny")
    reqs = [Request(100, 10, 0.0), Request(700, 300, 0.1), Request(50, 5, 0.2)]
    size, note = max_model_len_for(reqs, tiny)
    assert size == 1000
    assert "sized from the trace's longest request: request 1 of the replay (700 input + 300 output" in note
    assert max_model_len_for(reqs, tiny, 2048)[0] == 2048
    assert max_model_len_for([Request(4, 4, 0.0)], tiny)[0] == 64  # room for the warm-up requests


def test_max_model_len_without_a_vllm_server_is_bad_input():
    result = CliRunner().invoke(app, ["replay", "--url", "http://127.0.0.1:9", "--max-model-len", "10"])
    assert result.exit_code == 2
    assert _lines(result.stderr) == ["error: --max-model-len applies to --server vllm only"]


def test_progress_goes_to_stderr_and_not_with_json():
    with StubServer() as stub:
        shown = CliRunner().invoke(app, [*REPLAY, "--url", stub.url])
        quiet = CliRunner().invoke(app, [*REPLAY, "--url", stub.url, "--json"])
    assert shown.exit_code == 0 and quiet.exit_code == 0
    assert "20/20 sent, 20 done" in shown.stderr and "ETA" in shown.stderr
    assert "sent," not in quiet.stderr
    assert json.loads(quiet.stdout)["summary"]["ok"] == 20


@pytest.mark.parametrize(("update_period_s", "expected"), [(0.2, 1), (0.005, 0)])
def test_one_energy_window_warning_per_run_not_one_per_meter_window(update_period_s, expected):
    """The 0.5 s meter windows are summed, so they never warn themselves; the run warns once when its
    energy window is shorter than 10 counter updates, saying what to change."""
    t0 = time.perf_counter()
    gpu = SimulatedGpu(SimClock(), PowerTrace.constant(300.0), update_period_s=update_period_s)
    gpu.clock = lambda: time.perf_counter() - t0  # type: ignore[assignment]
    meter = EnergyMeter([gpu], clock=time.perf_counter)
    reqs = [Request(16, 40, 0.05 * i) for i in range(20)]
    with StubServer(StubConfig(token_delay_s=0.005)) as stub, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        replay_servers([ExternalServer(stub.url)], reqs, meter=meter, idle_s=0, warmup_requests=0)
    ours = [w for w in seen if issubclass(w.category, MeasurementWarning)]
    assert len(ours) == expected, [str(w.message) for w in ours]
    if expected:
        assert "--num-requests" in str(ours[0].message) and "--time-scale" in str(ours[0].message)

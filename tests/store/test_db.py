"""Tests of llm_energy.store.db: round trips, refusal of foreign files, atomic writes, locking."""

from __future__ import annotations

import math
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from llm_energy.errors import ConfigError, StoreError
from llm_energy.records import Measurement, PhaseResult, RunResult
from llm_energy.store import APPLICATION_ID, MEMORY, SCHEMA_VERSION, Store, default_db_path


def _measurement(
    duration_s: float, gpu_j: float, cpu_j: float, *, flags: tuple[str, ...] = ()
) -> Measurement:
    """GPU measured, CPU and DRAM estimated: the mixed-source case the store must keep apart."""
    return Measurement(
        duration_s=duration_s,
        energy_j={"gpu:0": gpu_j, "gpu:1": gpu_j / 2, "cpu:0": cpu_j, "dram:0": cpu_j / 10},
        uncertainty_j={"gpu:0": 0.1 + 0.2, "gpu:1": 0.05, "cpu:0": cpu_j / 4, "dram:0": 1.0},
        source={"gpu:0": "measured", "gpu:1": "measured", "cpu:0": "estimated", "dram:0": "estimated"},
        idle_power_w={"gpu:0": 61.25, "gpu:1": 60.0},
        flags=flags,
    )


def _run(run_id: str = "run-1", **overrides: object) -> RunResult:
    fields: dict[str, object] = {
        "run_id": run_id,
        "config": {
            "model": "llama-3.1-8b",
            "engine": "hf",
            "mode": "eager",
            "batch_size": 8,
            "input_len": 512,
            "output_len": 128,
            "point_id": f"point-{run_id}",
            "dtype": "bfloat16",
            "gpu_settings": {"power_limit_w": 500, "clocks_mhz": [1980, 2619]},
        },
        "env": {"gpu_name": "NVIDIA H100 80GB HBM3", "driver": "550.54", "gpu_count": 2},
        "phases": {
            # Deliberately not in canonical order: reading back must order them.
            "total": PhaseResult("total", _measurement(3.2, 2100.0, 95.0), repetitions=1, tokens=5120),
            "decode": PhaseResult(
                "decode",
                _measurement(2.0, 1400.0, 60.0, flags=("estimated:cpu:0",)),
                repetitions=4,
                tokens=128,
            ),
            "prefill": PhaseResult(
                "prefill",
                _measurement(0.4, 300.0, 12.0, flags=("short-window:gpu:0",)),
                repetitions=10,
                tokens=4096,
            ),
        },
        "status": "ok",
        "error": None,
        "compile_s": 12.5,
        "load_s": 3.25,
        "created_at": "2025-01-02T03:04:05.678901+00:00",
    }
    fields.update(overrides)
    return RunResult(**fields)  # type: ignore[arg-type]


def _oom_run(run_id: str = "run-oom") -> RunResult:
    return _run(run_id, phases={}, status="oom", error="CUDA out of memory. Tried to allocate 2.00 GiB")


def test_round_trip_is_exact_with_mixed_sources_and_flags(tmp_path: Path) -> None:
    """A written RunResult reads back equal field by field, phases ordered prefill, decode, total."""
    run = _run()
    with Store(tmp_path / "runs.db") as store:
        store.write_run(run)
    with Store(tmp_path / "runs.db") as store:
        back = store.get_run("run-1")
    assert back == run
    assert list(back.phases) == ["prefill", "decode", "total"]
    decode = back.phases["decode"].measurement
    assert type(decode.energy_j) is dict and type(decode.source) is dict
    assert decode.source["cpu:0"] == "estimated" and decode.source["gpu:0"] == "measured"
    assert decode.flags == ("estimated:cpu:0",)
    assert decode.uncertainty_j["gpu:0"] == 0.1 + 0.2  # floats survive bit for bit


def test_idle_phase_is_read_back_last(tmp_path: Path) -> None:
    """Phases come back in the order prefill, decode, total, idle, whatever order they were given in."""
    idle = PhaseResult("idle", _measurement(5.0, 300.0, 50.0), repetitions=1, tokens=0)
    run = _run()
    run = _run(phases={"idle": idle, **run.phases})
    with Store(tmp_path / "runs.db") as store:
        store.write_run(run)
        back = store.get_run(run.run_id)
    assert back == run
    assert list(back.phases) == ["prefill", "decode", "total", "idle"]


def test_oom_run_without_phases_round_trips(tmp_path: Path) -> None:
    """A failed run with no phases, its status and error message read back unchanged."""
    run = _oom_run()
    with Store(tmp_path / "runs.db") as store:
        store.write_run(run)
        assert store.get_run(run.run_id) == run
        assert store.read_runs(status="oom") == [run]
        assert store.read_runs(status="ok") == []


def test_in_memory_store_round_trips() -> None:
    """The ':memory:' store behaves like a file store."""
    with Store(MEMORY) as store:
        store.write_run(_run())
        assert store.read_runs() == [_run()]


def test_database_is_marked_with_application_id_and_version(tmp_path: Path) -> None:
    """A new store carries our application_id and schema version, and its parent dirs are created."""
    path = tmp_path / "a" / "b" / "runs.db"
    with Store(path):
        pass
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "phases"} <= tables


def test_denormalised_columns_hold_config_values(tmp_path: Path) -> None:
    """The query columns of runs and phases repeat config keys and whole-window GPU energy."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        store.write_run(_run())
    with closing(sqlite3.connect(path)) as raw:
        row = raw.execute(
            "SELECT point_id, model, engine, mode, batch_size, input_len, output_len FROM runs"
        ).fetchone()
        gpu_j = raw.execute("SELECT gpu_energy_j FROM phases WHERE phase = 'decode'").fetchone()[0]
    assert row == ("point-run-1", "llama-3.1-8b", "hf", "eager", 8, 512, 128)
    assert gpu_j == 1400.0 + 700.0


def test_read_runs_filters_and_keeps_write_order(tmp_path: Path) -> None:
    """read_runs filters by status and ids, skips unknown ids and returns runs in write order."""
    runs = [_run("c"), _oom_run("a"), _run("b")]
    with Store(tmp_path / "runs.db") as store:
        for run in runs:
            store.write_run(run)
        assert [r.run_id for r in store.read_runs()] == ["c", "a", "b"]
        assert [r.run_id for r in store.read_runs(status="ok")] == ["c", "b"]
        assert [r.run_id for r in store.read_runs(run_ids=["b", "zzz", "c"])] == ["c", "b"]
        assert [r.run_id for r in store.read_runs(run_ids=["a", "b"], status="ok")] == ["b"]
        assert store.read_runs(run_ids=[]) == []
        assert store.count_runs() == 3


def test_read_runs_handles_more_ids_than_one_query_binds(tmp_path: Path) -> None:
    """Asking for over a thousand ids (more than old SQLite binds at once) still finds them all."""
    with Store(tmp_path / "runs.db") as store:
        for i in range(3):
            store.write_run(_oom_run(f"r{i}"))
        wanted = [f"missing-{i}" for i in range(1200)] + ["r2", "r0"]
        assert [r.run_id for r in store.read_runs(run_ids=wanted)] == ["r0", "r2"]


def test_bad_filters_are_config_errors(tmp_path: Path) -> None:
    """An unknown status or a bare string of run ids is rejected, not silently matched."""
    with Store(tmp_path / "runs.db") as store:
        with pytest.raises(ConfigError, match="unknown run status"):
            store.read_runs(status="done")
        with pytest.raises(ConfigError, match="single string"):
            store.read_runs(run_ids="run-1")


def test_get_run_of_unknown_id_raises(tmp_path: Path) -> None:
    """get_run of an id that is not stored is a StoreError naming the id."""
    with Store(tmp_path / "runs.db") as store, pytest.raises(StoreError, match="nope"):
        store.get_run("nope")


def test_duplicate_run_id_is_refused_and_first_row_kept(tmp_path: Path) -> None:
    """Writing a run_id twice raises StoreError and leaves the first run as it was."""
    first = _run("dup")
    with Store(tmp_path / "runs.db") as store:
        store.write_run(first)
        with pytest.raises(StoreError, match="already stored"):
            store.write_run(_oom_run("dup"))
        assert store.count_runs() == 1
        assert store.get_run("dup") == first


def test_unserialisable_config_writes_nothing(tmp_path: Path) -> None:
    """A config value JSON cannot hold raises StoreError and writes no row."""
    with Store(tmp_path / "runs.db") as store:
        store.write_run(_run("kept"))
        with pytest.raises(StoreError, match="JSON"):
            store.write_run(_run("bad", config={"model": "m", "callback": object()}))
        assert store.count_runs() == 1
        assert [r.run_id for r in store.read_runs()] == ["kept"]


def test_failure_mid_transaction_rolls_back_the_run_row(tmp_path: Path) -> None:
    """A phase row the schema rejects, after the run row was inserted, leaves neither row behind."""
    bad_phase = PhaseResult("warmup", _measurement(1.0, 10.0, 1.0), repetitions=1, tokens=1)  # type: ignore[arg-type]
    path = tmp_path / "runs.db"
    with Store(path) as store:
        store.write_run(_run("kept"))
        with pytest.raises(StoreError, match="CHECK constraint"):
            phases: dict[Any, PhaseResult] = {**_run().phases, "warmup": bad_phase}
            store.write_run(_run("bad", phases=phases))
        assert store.count_runs() == 1
        store.write_run(_run("after"))  # the connection is usable again
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT COUNT(*) FROM phases WHERE run_id = 'bad'").fetchone()[0] == 0


def test_mismatched_phase_key_is_refused(tmp_path: Path) -> None:
    """A phases mapping whose key names another phase than its value is refused, nothing written."""
    run = _run()
    with Store(tmp_path / "runs.db") as store:
        with pytest.raises(StoreError, match="holds phase"):
            store.write_run(_run(phases={"decode": run.phases["prefill"]}))
        assert store.count_runs() == 0


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    """A status outside ok/oom/error breaks the schema's CHECK and writes nothing."""
    with Store(tmp_path / "runs.db") as store:
        with pytest.raises(StoreError):
            store.write_run(_run(status="finished"))
        assert store.count_runs() == 0


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite database with someone else's tables raises StoreError and its bytes do not change."""
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE foo (x INTEGER)")
        raw.execute("INSERT INTO foo VALUES (1)")
        raw.commit()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another application") as info:
        Store(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_other_application_id_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite database marked with another application_id is refused even with no tables."""
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("PRAGMA application_id = 1234")
        raw.commit()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="0x4d2"):
        Store(path)
    assert path.read_bytes() == before


def test_newer_schema_version_is_refused_untouched(tmp_path: Path) -> None:
    """A store written by a newer llm-energy (higher user_version) is refused, bytes unchanged."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        store.write_run(_run())
    with closing(sqlite3.connect(path)) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        raw.commit()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer"):
        Store(path)
    assert path.read_bytes() == before


def test_text_file_is_refused_untouched(tmp_path: Path) -> None:
    """A text file posing as the database raises StoreError naming it, and is left as it was."""
    path = tmp_path / "runs.db"
    path.write_text("run_id,energy_j\nrun-1,12.5\n")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database") as info:
        Store(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    """An existing empty file is an empty SQLite database, so it becomes a new store."""
    path = tmp_path / "runs.db"
    path.touch()
    with Store(path) as store:
        store.write_run(_run())
        assert store.count_runs() == 1


def test_directory_path_is_refused(tmp_path: Path) -> None:
    """A directory given as the database path raises StoreError."""
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    """A database file the user may not read raises StoreError."""
    path = tmp_path / "runs.db"
    with Store(path):
        pass
    path.chmod(0)
    try:
        with pytest.raises(StoreError, match="cannot open"):
            Store(path)
    finally:
        path.chmod(0o600)


def test_locked_database_write_raises_and_keeps_rows(tmp_path: Path) -> None:
    """A write blocked by another connection's lock past the timeout says 'locked'; rows survive."""
    path = tmp_path / "runs.db"
    with Store(path, timeout_s=0.2) as store:
        store.write_run(_run("before"))
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreError, match="locked") as info:
                store.write_run(_run("blocked"))
            assert str(path) in str(info.value)
            other.execute("ROLLBACK")
        assert [r.run_id for r in store.read_runs()] == ["before"]
        store.write_run(_run("after"))
        assert store.count_runs() == 2


def test_opening_a_locked_database_raises(tmp_path: Path) -> None:
    """Opening a store while another connection holds an exclusive lock is a 'locked' StoreError."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        store.write_run(_run("before"))
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked"):
            Store(path, timeout_s=0.2).write_run(_run("blocked"))
        other.execute("ROLLBACK")
    with Store(path) as store:
        assert [r.run_id for r in store.read_runs()] == ["before"]


def test_closed_store_raises(tmp_path: Path) -> None:
    """Using a store after close() is a StoreError; close() twice is harmless."""
    store = Store(tmp_path / "runs.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count_runs()


def test_runs_frame_has_one_row_per_run_with_hand_computed_values(tmp_path: Path) -> None:
    """runs_frame flattens config/env and gives per-repetition phase figures computed by hand."""
    with Store(tmp_path / "runs.db") as store:
        store.write_run(_run("ok-run"))
        store.write_run(_oom_run("oom-run"))
        frame = store.runs_frame()
        assert list(store.runs_frame(status="oom")["run_id"]) == ["oom-run"]

    assert list(frame["run_id"]) == ["ok-run", "oom-run"]
    fixed = ["run_id", "created_at", "status", "error", "compile_s", "load_s"]
    assert list(frame.columns[:6]) == fixed
    for column in ["model", "engine", "mode", "batch_size", "input_len", "output_len", "dtype", "point_id"]:
        assert column in frame.columns
    assert frame.loc[0, "gpu_settings"] == '{"power_limit_w": 500, "clocks_mhz": [1980, 2619]}'
    assert frame.loc[0, "env_gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert "idle_energy_j" not in frame.columns

    ok = frame.iloc[0]
    # decode window: 2.0 s, gpu 1400 + 700 J, cpu 60 + dram 6 J, 4 repetitions of 128 tokens.
    assert ok["decode_energy_j"] == pytest.approx(2100.0 / 4)
    assert ok["decode_energy_per_token_j"] == pytest.approx(2100.0 / (4 * 128))
    assert ok["decode_duration_s"] == pytest.approx(0.5)
    assert ok["decode_tokens_per_s"] == pytest.approx(128 / 0.5)
    assert ok["decode_mean_power_w"] == pytest.approx(2100.0 / 2.0)
    assert ok["decode_uncertainty_j"] == pytest.approx((0.1 + 0.2 + 0.05) / 4)
    assert ok["decode_cpu_energy_j"] == pytest.approx(66.0 / 4)
    assert ok["decode_cpu_source"] == "estimated"
    assert ok["decode_tokens"] == 128 and ok["decode_repetitions"] == 4
    assert ok["prefill_flags"] == "short-window:gpu:0"
    assert ok["total_flags"] == ""

    oom = frame.iloc[1]
    assert oom["status"] == "oom" and oom["error"].startswith("CUDA out of memory")
    assert math.isnan(oom["decode_energy_j"])
    assert frame["decode_tokens"].isna().tolist() == [False, True]
    assert str(frame["decode_tokens"].dtype) == "Int64"


def test_runs_frame_reports_missing_cpu_as_nan_and_clashing_keys_prefixed(tmp_path: Path) -> None:
    """No CPU domain gives NaN CPU energy and '' source; a config key clashing with a column is prefixed."""
    gpu_only = Measurement(
        duration_s=1.0, energy_j={"gpu:0": 700.0}, uncertainty_j={}, source={"gpu:0": "measured"}
    )
    run = _run(
        config={"model": "m", "status": "shadow"},
        phases={"decode": PhaseResult("decode", gpu_only, repetitions=2, tokens=10)},
    )
    with Store(tmp_path / "runs.db") as store:
        store.write_run(run)
        frame = store.runs_frame()
    assert frame.loc[0, "status"] == "ok" and frame.loc[0, "config_status"] == "shadow"
    assert math.isnan(frame.loc[0, "decode_cpu_energy_j"])
    assert frame.loc[0, "decode_cpu_source"] == ""


def test_runs_frame_of_empty_store_has_fixed_columns(tmp_path: Path) -> None:
    """An empty store gives an empty frame that still has the fixed columns."""
    with Store(tmp_path / "runs.db") as store:
        frame = store.runs_frame()
    assert len(frame) == 0
    fixed = ["run_id", "created_at", "status", "error", "compile_s", "load_s", "idle_power_w"]
    assert list(frame.columns) == fixed


def test_default_db_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$LLM_ENERGY_DB wins, then an absolute $XDG_DATA_HOME, then ~/.local/share."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLM_ENERGY_DB", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "llm-energy" / "runs.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "llm-energy" / "runs.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "llm-energy" / "runs.db"
    monkeypatch.setenv("LLM_ENERGY_DB", str(tmp_path / "explicit.db"))
    assert default_db_path() == tmp_path / "explicit.db"

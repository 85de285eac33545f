"""Serving runs in the results store: run summary, per-request records, and the power time series.

Online runs live in the same SQLite file as offline runs (`Store`), in their own tables, created on
the first write (`CREATE TABLE IF NOT EXISTS`: additive, so the schema version of `runs`/`phases`
is unchanged and older files gain them on first use):

- `serving_runs`: one row per run: scalar columns for SQL (server, model, rates, counts, energy
  figures, frontend lag, partial) beside the JSON of config, summary, energy, windows and lag;
- `serving_requests`: one row per request: timeline, lengths, outcome, latencies and its own
  joules (`energy_j`, from `metrics.attribute_energy`), so an online/offline comparison can join
  them on (input_tokens, output_tokens);
- `serving_samples`: the monitor's time series (frontend CPU per server, power per GPU);
- `serving_intervals`: the consecutive meter windows (start_s, end_s, joules of all GPUs).

A run is written in one transaction (all or nothing) from its rows (`ServingRows`, which
`serving.persist` makes of a `ServingRun`: the store knows the tables, not the serving records).
Reading gives pandas DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_energy.errors import StoreError
from llm_energy.store.db import Store

if TYPE_CHECKING:
    import sqlite3

    import pandas as pd

__all__ = [
    "prepare_serving_store",
    "read_serving_requests",
    "read_serving_runs",
    "read_serving_samples",
    "ServingRows",
    "write_serving_rows",
]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS serving_runs (
    run_id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'partial')),
    exit_reason TEXT,
    server TEXT, model TEXT, server_kind TEXT, replicas INTEGER, policy TEXT,
    trace TEXT, time_scale REAL, rate_per_s REAL,
    requests INTEGER, ok INTEGER, failed INTEGER,
    slo_attainment_pct REAL, ttft_p90_s REAL, tpot_p90_s REAL,
    energy_j REAL, energy_per_request_j REAL, energy_per_output_token_j REAL,
    client_energy_per_request_j REAL, client_energy_per_output_token_j REAL,
    gpu_energy_per_request_j REAL, gpu_energy_per_output_token_j REAL,
    frontend_lag INTEGER, idle_power_w REAL,
    config_json TEXT NOT NULL, summary_json TEXT NOT NULL, energy_json TEXT NOT NULL,
    per_gpu_energy_json TEXT NOT NULL, windows_json TEXT NOT NULL, lag_json TEXT NOT NULL,
    replica_requests_json TEXT NOT NULL, notes_json TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS serving_requests (
    run_id TEXT NOT NULL REFERENCES serving_runs (run_id) ON DELETE CASCADE,
    request_index INTEGER NOT NULL, replica INTEGER NOT NULL,
    scheduled_s REAL, sent_s REAL, first_token_s REAL, done_s REAL,
    input_tokens INTEGER NOT NULL, output_tokens_requested INTEGER NOT NULL,
    output_tokens_received INTEGER NOT NULL, input_tokens_reported INTEGER,
    success INTEGER NOT NULL, failure TEXT, error TEXT, status_code INTEGER,
    ttft_s REAL, tpot_s REAL, e2e_s REAL, energy_j REAL, token_times_json TEXT NOT NULL,
    PRIMARY KEY (run_id, request_index)
)""",
    """CREATE TABLE IF NOT EXISTS serving_samples (
    run_id TEXT NOT NULL REFERENCES serving_runs (run_id) ON DELETE CASCADE,
    t_s REAL NOT NULL, cpu_pct_json TEXT NOT NULL, power_w_json TEXT NOT NULL, total_power_w REAL
)""",
    """CREATE TABLE IF NOT EXISTS serving_intervals (
    run_id TEXT NOT NULL REFERENCES serving_runs (run_id) ON DELETE CASCADE,
    start_s REAL NOT NULL, end_s REAL NOT NULL, energy_j REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS serving_samples_run ON serving_samples (run_id)",
    "CREATE INDEX IF NOT EXISTS serving_intervals_run ON serving_intervals (run_id)",
)


def _ensure(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)


def prepare_serving_store(store: Store) -> None:
    """Create the serving tables now, in a write transaction (before a replay starts).

    A database that cannot take the run's write (read-only, locked) then fails before the run, not
    after it.

    Raises:
        StoreError: The database cannot be written.
    """
    with store._transaction("prepare serving tables in", write=True) as conn:
        _ensure(conn)


@dataclass(frozen=True)
class ServingRows:
    """One serving run as rows of the serving tables, in their column order (see `_SCHEMA`).

    Attributes:
        run_id: The run's id (the key of every row).
        run: The `serving_runs` row.
        requests: The `serving_requests` rows.
        samples: The `serving_samples` rows.
        intervals: The `serving_intervals` rows.
    """

    run_id: str
    run: tuple[Any, ...]
    requests: list[tuple[Any, ...]]
    samples: list[tuple[Any, ...]]
    intervals: list[tuple[Any, ...]]


def write_serving_rows(store: Store, rows: ServingRows) -> None:
    """Write one serving run's rows in one transaction (all or nothing).

    Raises:
        StoreError: The run_id is stored already, or the write failed; nothing is written then.
    """
    with store._transaction("write a serving run to", write=True) as conn:
        _ensure(conn)
        if conn.execute("SELECT 1 FROM serving_runs WHERE run_id = ?", (rows.run_id,)).fetchone():
            raise StoreError(f"cannot write serving run to {store.path}: run_id {rows.run_id!r} is stored")
        conn.execute(f"INSERT INTO serving_runs VALUES ({', '.join('?' * len(rows.run))})", rows.run)
        conn.executemany(f"INSERT INTO serving_requests VALUES ({', '.join('?' * 20)})", rows.requests)
        conn.executemany("INSERT INTO serving_samples VALUES (?, ?, ?, ?, ?)", rows.samples)
        conn.executemany("INSERT INTO serving_intervals VALUES (?, ?, ?, ?)", rows.intervals)


def _frame(store: Store, sql: str, params: tuple[Any, ...]) -> pd.DataFrame:
    import pandas as pd

    with store._transaction("read serving runs from", write=False) as conn:
        _exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'serving_runs'"
        ).fetchone()
        if not _exists:
            return pd.DataFrame()
        cursor = conn.execute(sql, params)
        columns = [d[0] for d in cursor.description]
        rows = [tuple(row) for row in cursor.fetchall()]
    return pd.DataFrame(rows, columns=columns)


def read_serving_runs(store: Store) -> pd.DataFrame:
    """Return one row per stored serving run (scalar columns; `*_json` columns hold the details).

    Empty (no columns) when no serving run was ever stored.
    """
    return _frame(store, "SELECT * FROM serving_runs ORDER BY rowid", ())


def read_serving_requests(store: Store, run_id: str | None = None) -> pd.DataFrame:
    """Return one row per request of all runs, or of one run.

    Each row has `input_tokens`, `output_tokens_received` and the request's own joules `energy_j`:
    the join keys and the figure of an online-vs-offline comparison.

    `success` is a bool column; `token_times_json` holds each token chunk's arrival time.
    """
    where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    frame = _frame(store, f"SELECT * FROM serving_requests {where} ORDER BY run_id, request_index", params)
    if len(frame):
        frame["success"] = frame["success"].astype(bool)
    return frame


def read_serving_samples(store: Store, run_id: str) -> pd.DataFrame:
    """Return the power/CPU time series of one run (`t_s`, `total_power_w`, per-device JSON)."""
    return _frame(store, "SELECT * FROM serving_samples WHERE run_id = ? ORDER BY t_s", (run_id,))

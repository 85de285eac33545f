"""The embedded SQLite results store: every `RunResult` a sweep produces, in one portable file.

SQLite (stdlib `sqlite3`) gives transactions, concurrent readers and a single file that can be
copied next to a report, with no server. This module promises:

- A run and its phases are written in one transaction: all or nothing.
- It never writes to a file it did not create. A file that is not SQLite, a SQLite database of
  another application (foreign tables or another `application_id`) or one of a newer schema version
  is refused with `NotAStore` (a `StoreError` and a `ConfigError`: bad input) before anything is
  written.
- Opened `read_only`, it never creates or changes a file: a missing path, an empty (0-byte) file or
  a database without our schema is refused with `NotAStore` naming the path.
- Reading back rebuilds `RunResult` objects equal to those written, provided `config` and `env` hold
  JSON types (sequences come back as lists, mappings as dicts).
- Every failure is a `StoreError` naming the path; a lock held past `timeout_s` says "locked".

Only bound parameters reach SQL (rows are built by `_rows`). The default rollback journal is kept
(not WAL) so the database is one self-contained file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal

from llm_energy.errors import ConfigError, NotAStore, StoreError
from llm_energy.records import STATUSES, RunResult
from llm_energy.store._rows import RunRows, chunks, run_rows, runs_of, schema_statements
from llm_energy.store.frames import frame_of_runs

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

APPLICATION_ID: Final = 0x4C4C4D45
"""Written to the SQLite header (`PRAGMA application_id`, ASCII "LLME") to mark a file as ours."""

SCHEMA_VERSION: Final = 1
"""Version of `schema.sql`, kept in `PRAGMA user_version`."""

MEMORY: Final = ":memory:"
"""Pass as `path` for a private in-memory store (lost on `close`)."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = frozenset({"runs", "phases"})

_RUN_COLUMNS = (
    "run_id, point_id, created_at, status, error, model, engine, mode, batch_size, input_len, "
    "output_len, compile_s, load_s, config_json, env_json"
)
_INSERT_RUN = (
    f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (:run_id, :point_id, :created_at, :status, :error, "
    ":model, :engine, :mode, :batch_size, :input_len, :output_len, :compile_s, :load_s, "
    ":config_json, :env_json)"
)
_PHASE_COLUMNS = (
    "run_id, phase, repetitions, tokens, duration_s, gpu_energy_j, energy_json, uncertainty_json, "
    "source_json, idle_power_json, flags_json"
)
_INSERT_PHASE = f"INSERT INTO phases ({_PHASE_COLUMNS}) VALUES ({', '.join('?' * 11)})"


def default_db_path() -> Path:
    """Return where the results store lives unless told otherwise.

    `$LLM_ENERGY_DB` if set, else `$XDG_DATA_HOME/llm-energy/runs.db` (only an absolute
    `XDG_DATA_HOME` counts, as the XDG spec says), else `~/.local/share/llm-energy/runs.db`.
    """
    explicit = os.environ.get("LLM_ENERGY_DB")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "llm-energy" / "runs.db"


class Store:
    """The results database: write `RunResult`s, read them back as records or one DataFrame.

    A `Store` holds one connection and is meant for one thread; use it as a context manager so the
    connection is closed. Several processes may open the same file: SQLite serialises the writers,
    and a writer that waits longer than `timeout_s` gets a `StoreError` saying the file is locked.

    Args:
        path: Database file, created with its parent directories if absent; `":memory:"` for a
            private in-memory store. An existing empty file is treated as a new database.
        timeout_s: How long to wait for another connection's lock before giving up, in seconds.
        read_only: Open an existing store for reading only: nothing is created or written, and
            a missing path, an empty file or a database without our schema is refused.

    Raises:
        NotAStore: The path is a directory, the file is not a SQLite database, or it is a SQLite
            database of another application or of another schema version (in all these cases
            nothing is written to it); with `read_only`, also a missing path or an empty file.
        StoreError: The file is unreadable or the database is locked.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0, read_only: bool = False) -> None:
        self._memory = str(path) == MEMORY
        self.path: Path = Path(path) if self._memory else Path(path).expanduser()
        self.timeout_s = timeout_s
        self.read_only = read_only and not self._memory
        self._conn: sqlite3.Connection | None = None
        conn = self._connect()
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Idempotent; the store cannot be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write_run(self, result: RunResult) -> None:
        """Write one run and its phases in a single transaction (all or nothing).

        Args:
            result: The run to store. `config` and `env` must be JSON-serialisable.

        Raises:
            StoreError: The run_id is already stored, a value is not JSON-serialisable, a value
                breaks the schema (unknown status or phase, repetitions < 1), the database is
                locked, or the write failed. The database is unchanged in every case.
        """
        self.write_runs([result])

    def write_runs(self, results: Sequence[RunResult]) -> None:
        """Store several runs in ONE transaction: all of them or none (a sweep point's repeats).

        Raises:
            StoreError: as `write_run`, for any of the runs; nothing is written then.
        """
        action = f"write {len(results)} run(s) to"
        rows = self._rows(results, action)
        with self._transaction(action, write=True) as conn:
            self._insert(conn, rows, action)
        logger.debug("stored %d run(s) in %s", len(results), self.path)

    def point_statuses(self, env_id: str | None = None) -> dict[str, set[str]]:
        """Return, per stored point_id, the set of statuses its runs have (for resuming sweeps).

        Args:
            env_id: Keep only runs measured in this environment (`env.env_id`); None keeps all.
        """
        with self._transaction("read points of", write=False) as conn:
            rows = conn.execute(
                "SELECT point_id, status, json_extract(env_json, '$.env_id') "
                "FROM runs WHERE point_id IS NOT NULL"
            ).fetchall()
        out: dict[str, set[str]] = {}
        for point_id, status, run_env in rows:
            if env_id is None or run_env == env_id:
                out.setdefault(point_id, set()).add(status)
        return out

    def read_runs(
        self, *, status: str | None = None, run_ids: Sequence[str] | None = None
    ) -> list[RunResult]:
        """Return stored runs, rebuilt as `RunResult`s, in the order they were written.

        Args:
            status: Keep only runs of this status (`ok`, `oom` or `error`).
            run_ids: Keep only these runs; ids that are not stored are skipped.

        Returns:
            The runs. Each one's phases are keyed by phase name in the order prefill, decode,
            total, idle; measurement mappings are dicts and flags a tuple.

        Raises:
            ConfigError: `status` is not a known status, or `run_ids` is a bare string.
            StoreError: The database is locked, or a stored row cannot be decoded.
        """
        if status is not None and status not in STATUSES:
            raise ConfigError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
        if isinstance(run_ids, str):
            raise ConfigError("run_ids must be a sequence of run ids, not a single string")
        where, params = ("WHERE status = ?", [status]) if status is not None else ("", [])
        with self._transaction("read runs from", write=False) as conn:
            if run_ids is None:
                run_rows = conn.execute(
                    f"SELECT rowid, * FROM runs {where} ORDER BY rowid", params
                ).fetchall()
                phase_rows = conn.execute(
                    f"SELECT * FROM phases WHERE run_id IN (SELECT run_id FROM runs {where})", params
                ).fetchall()
            else:
                run_rows, phase_rows = [], []
                for chunk in chunks(list(dict.fromkeys(run_ids))):
                    # Only "?" placeholders are formatted in; the ids themselves are bound.
                    marks = ", ".join("?" * len(chunk))
                    status_clause = "AND status = ?" if status is not None else ""
                    run_rows += conn.execute(
                        f"SELECT rowid, * FROM runs WHERE run_id IN ({marks}) {status_clause}",
                        [*chunk, *params],
                    ).fetchall()
                    phase_rows += conn.execute(
                        f"SELECT * FROM phases WHERE run_id IN ({marks})", chunk
                    ).fetchall()
                run_rows.sort(key=lambda row: row["rowid"])
        return runs_of(run_rows, phase_rows, self.path)

    def get_run(self, run_id: str) -> RunResult:
        """Return the run stored under `run_id`.

        Raises:
            StoreError: No such run, or the database cannot be read.
        """
        runs = self.read_runs(run_ids=[run_id])
        if not runs:
            raise StoreError(f"no run {run_id!r} in results store {self.path}")
        return runs[0]

    def count_runs(self) -> int:
        """Return the number of stored runs.

        Raises:
            StoreError: The database cannot be read (e.g. it is locked).
        """
        with self._transaction("count runs in", write=False) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM runs").fetchone()
        return int(count)

    def runs_frame(self, *, status: str | None = None) -> pd.DataFrame:
        """Return one row per run, flattened for analysis and export.

        The columns are those of `llm_energy.store.frames.frame_of_runs`: the run's own fields,
        every `config` key, every `env` key prefixed `env_`, and per-repetition figures of the
        prefill, decode and total phases (`decode_energy_j`, `decode_energy_per_token_j`, ...).

        Args:
            status: Keep only runs of this status.

        Raises:
            ConfigError: `status` is not a known status.
            StoreError: The database cannot be read.
        """
        return frame_of_runs(self.read_runs(status=status))

    # -- internals -----------------------------------------------------------------------------

    def _rows(self, results: Sequence[RunResult], action: str) -> list[RunRows]:
        """Serialise runs before a transaction starts (a bad value raises before anything is locked)."""
        return [run_rows(result, action, self.path) for result in results]

    def _insert(self, conn: sqlite3.Connection, rows: Sequence[RunRows], action: str) -> None:
        """Insert serialised runs inside the caller's write transaction; refuse a stored run_id."""
        for run_row, phase_rows in rows:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_row["run_id"],)).fetchone():
                raise StoreError(
                    f"cannot {action} {self.path}: run_id {run_row['run_id']!r} is already stored"
                )
            conn.execute(_INSERT_RUN, run_row)
            conn.executemany(_INSERT_PHASE, phase_rows)

    def _connect(self) -> sqlite3.Connection:
        """Check the path without writing to it, then open a connection (read-only if asked)."""
        if self._memory:
            return sqlite3.connect(MEMORY, isolation_level=None)
        path = self.path
        try:
            if path.is_dir():
                raise NotAStore(f"cannot open results store {path}: it is a directory")
            if path.exists():
                with path.open("rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
                # An empty file is an empty database to SQLite too; anything else must be SQLite.
                if head and head != _SQLITE_MAGIC:
                    raise NotAStore(f"cannot open results store {path}: it is not a SQLite database")
                if not head and self.read_only:
                    raise NotAStore(f"cannot read results store {path}: it is an empty file, not a store")
            elif self.read_only:
                raise NotAStore(f"cannot read results store {path}: no such file")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot open results store {path}: {e.strerror or e}") from e
        try:
            # isolation_level=None: this class issues BEGIN/COMMIT itself, so a transaction spans
            # exactly what it should and never opens implicitly.
            if self.read_only:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                return sqlite3.connect(uri, timeout=self.timeout_s, isolation_level=None, uri=True)
            return sqlite3.connect(path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as e:
            raise self._error("open results store", e) from e

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Verify the database is ours (or empty) and create the schema in an empty one."""
        conn.row_factory = sqlite3.Row
        with self._errors("open results store"):
            if self._inspect(conn) == "empty":
                if self.read_only:
                    raise NotAStore(f"cannot read results store {self.path}: it is an empty database")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Look again under the write lock: another process may have created it meanwhile.
                    if self._inspect(conn) == "empty":
                        self._create_schema(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.rollback()
                    raise
            conn.execute("PRAGMA foreign_keys = ON")

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for statement in schema_statements():
            conn.execute(statement)
        # PRAGMAs take no bound parameters; both values are our integer constants.
        conn.execute(f"PRAGMA application_id = {int(APPLICATION_ID)}")
        conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
        logger.info("created results store %s (schema %d)", self.path, SCHEMA_VERSION)

    def _inspect(self, conn: sqlite3.Connection) -> Literal["empty", "ours"]:
        """Classify an open database by reading its header and catalogue; raise `NotAStore` if not ours."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = sorted(
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master")
            if not row[0].startswith("sqlite_")
        )
        where = f"results store {self.path}"
        if app_id == 0 and version == 0 and not names:
            return "empty"
        if app_id != APPLICATION_ID:
            what = f"application_id {app_id:#x}" if app_id else f"objects {', '.join(names) or 'none'}"
            raise NotAStore(
                f"cannot open {where}: it is a SQLite database of another application ({what}), "
                "not an llm-energy results store; refusing to use it"
            )
        if version > SCHEMA_VERSION:
            raise NotAStore(
                f"cannot open {where}: its schema version {version} is newer than this llm-energy "
                f"supports ({SCHEMA_VERSION}); upgrade llm-energy"
            )
        if version < SCHEMA_VERSION:
            raise NotAStore(
                f"cannot open {where}: schema version {version} has no migration to {SCHEMA_VERSION}"
            )
        missing = _TABLES.difference(names)
        if missing:
            raise NotAStore(f"cannot open {where}: it lacks table(s) {', '.join(sorted(missing))}; damaged?")
        return "ours"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"results store {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self, action: str, *, write: bool) -> Iterator[sqlite3.Connection]:
        """Run the body in one transaction; roll back on any exception, including a failed COMMIT.

        A write transaction takes the write lock at BEGIN (IMMEDIATE), so contention shows up as
        "locked" before anything is done rather than as a failed COMMIT.
        """
        conn = self._connection()
        with self._errors(action):
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors raised by the body into `StoreError`s naming `action` and the path."""
        try:
            yield
        except sqlite3.Error as e:
            raise self._error(action, e) from e

    def _error(self, action: str, e: sqlite3.Error) -> StoreError:
        name = getattr(e, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(e):
            reason = f"the database is locked by another connection (waited {self.timeout_s:g} s)"
        elif name == "SQLITE_NOTADB":
            reason = "it is not a SQLite database"
        else:
            reason = str(e)
        return StoreError(f"cannot {action} {self.path}: {reason}")

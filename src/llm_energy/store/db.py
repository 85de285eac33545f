"""The embedded SQLite results store: every `RunResult` a sweep produces, in one portable file.

SQLite (stdlib `sqlite3`) gives transactions, concurrent readers and a single file that can be
copied next to a report, with no server. This module promises:

- A run and its phases are written in one transaction: all or nothing.
- It never writes to a file it did not create. A file that is not SQLite, a SQLite database of
  another application (foreign tables or another `application_id`) or one of a newer schema version
  is refused with `StoreError` before anything is written.
- Reading back rebuilds `RunResult` objects equal to those written, provided `config` and `env` hold
  JSON types (sequences come back as lists, mappings as dicts).
- Every failure is a `StoreError` naming the path; a lock held past `timeout_s` says "locked".

Only bound parameters reach SQL. The default rollback journal is kept (not WAL) so the database is
one self-contained file. JSON is written with Python's `json` defaults, so NaN and infinities are
stored as the non-standard literals `NaN`/`Infinity` and read back as floats.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from llm_energy.errors import ConfigError, StoreError
from llm_energy.records import STATUSES, Measurement, Phase, PhaseResult, RunResult

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
_PHASE_ORDER: tuple[Phase, ...] = ("prefill", "decode", "total", "idle")
_CONFIG_COLUMNS = ("model", "engine", "mode", "batch_size", "input_len", "output_len")
# Stay under SQLITE_MAX_VARIABLE_NUMBER, which is 999 on SQLite builds older than 3.32.
_IN_CHUNK = 500

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

    Raises:
        StoreError: The path is a directory or unreadable, the file is not a SQLite database, or
            it is a SQLite database of another application or of a newer schema version (in all
            these cases nothing is written to it), or the database is locked.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self._memory = str(path) == MEMORY
        self.path: Path = Path(path) if self._memory else Path(path).expanduser()
        self.timeout_s = timeout_s
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
        rows = [self._rows_of(result, action) for result in results]
        with self._transaction(action, write=True) as conn:
            for result, (run_row, phase_rows) in zip(results, rows, strict=True):
                if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (result.run_id,)).fetchone():
                    raise StoreError(
                        f"cannot {action} {self.path}: run_id {result.run_id!r} is already stored"
                    )
                conn.execute(_INSERT_RUN, run_row)
                conn.executemany(_INSERT_PHASE, phase_rows)
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
                for chunk in _chunks(list(dict.fromkeys(run_ids))):
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
        return self._runs_of(run_rows, phase_rows)

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

        The columns are those of `llm_energy.store.export.frame_of_runs`: the run's own fields,
        every `config` key, every `env` key prefixed `env_`, and per-repetition figures of the
        prefill, decode and total phases (`decode_energy_j`, `decode_energy_per_token_j`, ...).

        Args:
            status: Keep only runs of this status.

        Raises:
            ConfigError: `status` is not a known status.
            StoreError: The database cannot be read.
        """
        from llm_energy.store.export import frame_of_runs

        return frame_of_runs(self.read_runs(status=status))

    # -- internals -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Check the path without writing to it, then open a connection."""
        if self._memory:
            return sqlite3.connect(MEMORY, isolation_level=None)
        path = self.path
        try:
            if path.is_dir():
                raise StoreError(f"cannot open results store {path}: it is a directory")
            if path.exists():
                with path.open("rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
                # An empty file is an empty database to SQLite too; anything else must be SQLite.
                if head and head != _SQLITE_MAGIC:
                    raise StoreError(f"cannot open results store {path}: it is not a SQLite database")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot open results store {path}: {e.strerror or e}") from e
        try:
            # isolation_level=None: this class issues BEGIN/COMMIT itself, so a transaction spans
            # exactly what it should and never opens implicitly.
            return sqlite3.connect(path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as e:
            raise self._error("open results store", e) from e

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Verify the database is ours (or empty) and create the schema in an empty one."""
        conn.row_factory = sqlite3.Row
        with self._errors("open results store"):
            if self._inspect(conn) == "empty":
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Look again under the write lock: another process may have created it meanwhile.
                    if self._inspect(conn) == "empty":
                        for statement in _schema_statements():
                            conn.execute(statement)
                        # PRAGMAs take no bound parameters; both values are our integer constants.
                        conn.execute(f"PRAGMA application_id = {int(APPLICATION_ID)}")
                        conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
                        logger.info("created results store %s (schema %d)", self.path, SCHEMA_VERSION)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.rollback()
                    raise
            conn.execute("PRAGMA foreign_keys = ON")

    def _inspect(self, conn: sqlite3.Connection) -> Literal["empty", "ours"]:
        """Classify an open database by reading its header and catalogue; raise if not ours."""
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
            raise StoreError(
                f"cannot open {where}: it is a SQLite database of another application ({what}); "
                "refusing to write to it"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"cannot open {where}: its schema version {version} is newer than this llm-energy "
                f"supports ({SCHEMA_VERSION}); upgrade llm-energy"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"cannot open {where}: schema version {version} has no migration to {SCHEMA_VERSION}"
            )
        missing = _TABLES.difference(names)
        if missing:
            raise StoreError(f"cannot open {where}: it lacks table(s) {', '.join(sorted(missing))}; damaged?")
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

    def _rows_of(self, result: RunResult, action: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
        """Serialise a run to bound-parameter rows before the transaction starts."""
        config = result.config
        try:
            run_row: dict[str, Any] = {
                "run_id": result.run_id,
                "point_id": _column(config.get("point_id")),
                "created_at": result.created_at,
                "status": result.status,
                "error": result.error,
                **{key: _column(config.get(key)) for key in _CONFIG_COLUMNS},
                "compile_s": result.compile_s,
                "load_s": result.load_s,
                "config_json": _dumps(config),
                "env_json": _dumps(result.env),
            }
            phase_rows = []
            for key, phase in result.phases.items():
                if key != phase.phase:
                    raise StoreError(
                        f"cannot {action} {self.path}: phases[{key!r}] holds phase {phase.phase!r}"
                    )
                m = phase.measurement
                phase_rows.append(
                    (
                        result.run_id,
                        phase.phase,
                        phase.repetitions,
                        phase.tokens,
                        m.duration_s,
                        m.gpu_energy_j,
                        _dumps(m.energy_j),
                        _dumps(m.uncertainty_j),
                        _dumps(m.source),
                        _dumps(m.idle_power_w),
                        _dumps(list(m.flags)),
                    )
                )
        except (TypeError, ValueError) as e:
            raise StoreError(f"cannot {action} {self.path}: a value is not JSON-serialisable: {e}") from e
        return run_row, phase_rows

    def _runs_of(self, run_rows: list[sqlite3.Row], phase_rows: list[sqlite3.Row]) -> list[RunResult]:
        """Rebuild `RunResult`s from rows read in one transaction."""
        try:
            phases: dict[str, list[PhaseResult]] = {}
            for row in phase_rows:
                phases.setdefault(row["run_id"], []).append(_phase_of(row))
            runs = []
            for row in run_rows:
                ordered = sorted(phases.get(row["run_id"], []), key=_phase_rank)
                runs.append(
                    RunResult(
                        run_id=row["run_id"],
                        config=json.loads(row["config_json"]),
                        env=json.loads(row["env_json"]),
                        phases={p.phase: p for p in ordered},
                        status=row["status"],
                        error=row["error"],
                        compile_s=_real(row["compile_s"]),
                        load_s=_real(row["load_s"]),
                        created_at=row["created_at"],
                    )
                )
        except (ValueError, TypeError, KeyError) as e:
            raise StoreError(f"cannot read runs from {self.path}: a stored row is malformed: {e}") from e
        return runs


def _schema_statements() -> list[str]:
    """Split the bundled schema.sql into complete statements (sqlite3 runs one per execute)."""
    text = resources.files("llm_energy.store").joinpath("schema.sql").read_text(encoding="utf-8")
    statements, pending = [], ""
    for line in text.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


def _json_default(value: object) -> object:
    # json only knows dict; records hold generic Mappings (e.g. MappingProxyType).
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} object {value!r:.60} is not JSON-serialisable")


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _column(value: object) -> object:
    """Return a config value as a SQLite scalar: scalars as they are, anything else as JSON."""
    return value if value is None or isinstance(value, str | int | float) else _dumps(value)


def _real(value: float | None) -> float:
    # SQLite stores a NaN REAL as NULL.
    return math.nan if value is None else float(value)


def _phase_rank(phase: PhaseResult) -> int:
    return _PHASE_ORDER.index(phase.phase) if phase.phase in _PHASE_ORDER else len(_PHASE_ORDER)


def _phase_of(row: sqlite3.Row) -> PhaseResult:
    measurement = Measurement(
        duration_s=_real(row["duration_s"]),
        energy_j=json.loads(row["energy_json"]),
        uncertainty_j=json.loads(row["uncertainty_json"]),
        source=json.loads(row["source_json"]),
        idle_power_w=json.loads(row["idle_power_json"]),
        flags=tuple(json.loads(row["flags_json"])),
    )
    return PhaseResult(
        phase=row["phase"], measurement=measurement, repetitions=row["repetitions"], tokens=row["tokens"]
    )


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]

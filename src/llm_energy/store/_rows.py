"""How a `RunResult` becomes rows of the `runs` and `phases` tables and back (used by `db.Store`).

Only bound parameters reach SQL. JSON is written with Python's `json` defaults, so NaN and infinities
are stored as the non-standard literals `NaN`/`Infinity` and read back as floats; SQLite stores a NaN
REAL as NULL, which reads back as NaN.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, Final

from llm_energy.errors import StoreError
from llm_energy.records import Measurement, Phase, PhaseResult, RunResult

_PHASE_ORDER: tuple[Phase, ...] = ("prefill", "decode", "total", "idle")
_CONFIG_COLUMNS = ("model", "engine", "mode", "batch_size", "input_len", "output_len")
# Stay under SQLITE_MAX_VARIABLE_NUMBER, which is 999 on SQLite builds older than 3.32.
_IN_CHUNK: Final = 500

RunRows = tuple[dict[str, Any], list[tuple[Any, ...]]]
"""One run serialised: its `runs` row (named parameters) and its `phases` rows."""


def run_rows(result: RunResult, action: str, path: object) -> RunRows:
    """Serialise a run to bound-parameter rows (before the transaction starts).

    Raises:
        StoreError: A phase is filed under another phase's key or a value is not JSON-serialisable;
            the message says `cannot {action} {path}`.
    """
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
                raise StoreError(f"cannot {action} {path}: phases[{key!r}] holds phase {phase.phase!r}")
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
        raise StoreError(f"cannot {action} {path}: a value is not JSON-serialisable: {e}") from e
    return run_row, phase_rows


def runs_of(run_rows: list[sqlite3.Row], phase_rows: list[sqlite3.Row], path: object) -> list[RunResult]:
    """Rebuild `RunResult`s from rows read in one transaction.

    Raises:
        StoreError: A stored row cannot be decoded.
    """
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
        raise StoreError(f"cannot read runs from {path}: a stored row is malformed: {e}") from e
    return runs


def schema_statements() -> list[str]:
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


def chunks(items: list[str]) -> Iterator[list[str]]:
    """Yield `items` in slices small enough to bind as one query's parameters."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]

"""Flatten stored runs into one table, one row per run, and export it as CSV or Parquet.

`frame_of_runs` defines the table; `Store.runs_frame` returns it for stored runs. `export_runs`
writes the file under a temporary name in the target's directory, flushes it to disk and renames
it over the target (`os.replace`, atomic on POSIX and Windows), so an interrupted export never
leaves a half-written file and never clobbers an existing one with partial content.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from llm_energy.atomic import write_atomically
from llm_energy.errors import ConfigError, StoreError
from llm_energy.records import Phase, PhaseResult, RunResult

if TYPE_CHECKING:
    import pandas as pd

    from llm_energy.store.db import Store

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "parquet"]
"""File formats `export_runs` writes."""

EXPORT_SUFFIXES: Final[dict[str, ExportFormat]] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
"""File suffixes (lower case) from which `export_runs` infers the format."""

FRAME_PHASES: Final[tuple[Phase, ...]] = ("prefill", "decode", "total")
"""Phases that get columns in `frame_of_runs` (idle is a baseline, not a result)."""

_FIXED = ("run_id", "created_at", "status", "error", "compile_s", "load_s", "idle_power_w")
_METRICS = (
    "duration_s",
    "energy_j",
    "uncertainty_j",
    "energy_per_token_j",
    "tokens",
    "repetitions",
    "tokens_per_s",
    "mean_power_w",
    "gpu_source",
    "cpu_energy_j",
    "cpu_source",
    "flags",
)
_RESERVED = frozenset(_FIXED) | {f"{p}_{m}" for p in FRAME_PHASES for m in _METRICS}


def frame_of_runs(runs: Iterable[RunResult]) -> pd.DataFrame:
    """Return one row per run, flattened for analysis and export.

    Columns, in this order: `run_id, created_at, status, error, compile_s, load_s`; every
    `config` key as its own column (mappings and sequences as JSON strings; a key that would clash
    with another column, or that starts with `env_`, is prefixed `config_`); every `env` key
    prefixed `env_`; then for each phase P of `FRAME_PHASES` that any run has:

    - `P_duration_s`, `P_energy_j`, `P_uncertainty_j`: one repetition, GPU domains only (NaN, never
      0 J, for a run without a GPU: its energy is in `P_cpu_energy_j`, estimated or measured);
    - `P_energy_per_token_j`, `P_tokens`, `P_repetitions`, `P_tokens_per_s`;
    - `P_mean_power_w`: mean GPU power over the window (NaN without a GPU);
    - `P_gpu_source`: how the GPU figures were obtained (`measured`, ...; `''` without a GPU);
    - `P_cpu_energy_j`: cpu: and dram: domains per repetition, NaN when none was metered;
    - `P_cpu_source`: their source (`measured`, `estimated`, `estimated+measured` when mixed, `''`
      when none);
    - `P_flags`: the measurement flags, `;`-joined.

    A run without phase P has NaN there (`<NA>` in the integer columns `P_tokens` and
    `P_repetitions`).
    """
    import pandas as pd

    config_columns: dict[str, None] = {}  # dicts as ordered sets, in first-seen order
    env_columns: dict[str, None] = {}
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "created_at": run.created_at,
            "status": run.status,
            "error": run.error,
            "compile_s": run.compile_s,
            "load_s": run.load_s,
            "idle_power_w": _idle_gpu_power_w(run),
        }
        for key, value in run.config.items():
            name = str(key)
            name = f"config_{name}" if name in _RESERVED or name.startswith("env_") else name
            row[name] = _cell(value)
            config_columns[name] = None
        for key, value in run.env.items():
            row[f"env_{key}"] = _cell(value)
            env_columns[f"env_{key}"] = None
        for phase in FRAME_PHASES:
            if phase in run.phases:
                row.update({f"{phase}_{m}": v for m, v in _phase_cells(run.phases[phase]).items()})
        rows.append(row)
    present = {name for row in rows for name in row}
    phase_columns = [f"{p}_{m}" for p in FRAME_PHASES for m in _METRICS if f"{p}_{m}" in present]
    frame = pd.DataFrame(rows, columns=[*_FIXED, *config_columns, *env_columns, *phase_columns])
    for name in phase_columns:
        if name.endswith(("_tokens", "_repetitions")):
            # Counts stay integers even where some runs lack the phase (plain int would become float).
            frame[name] = frame[name].astype("Int64")
    return frame


def _idle_gpu_power_w(run: RunResult) -> float:
    """GPU idle power measured before the run (summed over GPUs), NaN when none was measured."""
    for phase in run.phases.values():
        gpus = [w for d, w in phase.measurement.idle_power_w.items() if d.startswith("gpu")]
        if gpus:
            return float(sum(gpus))
    return math.nan


def export_runs(
    store: Store,
    path: str | Path,
    *,
    fmt: ExportFormat | None = None,
    status: str | None = None,
) -> int:
    """Write the store's runs, one row per run, to a CSV or Parquet file.

    Args:
        store: The results store to read.
        path: Target file; its parent directories are created. An existing file is replaced
            atomically, only once the new content is complete.
        fmt: `csv` or `parquet`; inferred from the suffix of `path` (see `EXPORT_SUFFIXES`) when
            None.
        status: Export only runs of this status (`ok`, `oom` or `error`).

    Returns:
        The number of rows (runs) written.

    Raises:
        ConfigError: The format is unknown or cannot be inferred from the suffix, or `status` is
            unknown.
        StoreError: The store cannot be read or the file cannot be written.
    """
    target = Path(path).expanduser()
    chosen = _format_of(target, fmt)
    frame = store.runs_frame(status=status)
    if chosen == "parquet":
        frame = _parquet_ready(frame)
    _write_atomically(frame, target, chosen)
    logger.info("exported %d runs to %s (%s)", len(frame), target, chosen)
    return len(frame)


def _cell(value: object) -> object:
    """Return a config/env value as a table cell: containers become JSON strings."""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=lambda v: dict(v) if isinstance(v, Mapping) else str(v))
    return value


def _phase_cells(phase: PhaseResult) -> dict[str, Any]:
    """Return the per-phase cells of `frame_of_runs`, keyed by metric name."""
    m = phase.measurement
    cpu_domains = [d for d in m.energy_j if d.startswith(("cpu:", "dram:"))]
    cpu_sources = sorted({str(m.source[d]) for d in cpu_domains if d in m.source})
    gpu_domains = m.domains("gpu:")
    # NaN, not 0 J, where no GPU was metered: a CPU-only run's GPU energy is unknown, not zero.
    gpu = bool(gpu_domains)
    return {
        "duration_s": phase.duration_s,
        "energy_j": phase.energy_j if gpu else math.nan,
        "uncertainty_j": phase.uncertainty_j if gpu else math.nan,
        "energy_per_token_j": phase.energy_per_token_j if gpu else math.nan,
        "tokens": phase.tokens,
        "repetitions": phase.repetitions,
        "tokens_per_s": phase.tokens_per_s,
        "mean_power_w": m.mean_power_w("gpu:") if gpu else math.nan,
        "gpu_source": "+".join(sorted({str(m.source[d]) for d in gpu_domains if d in m.source})),
        # NaN, not 0 J, when no CPU domain was metered: absence is not zero energy.
        "cpu_energy_j": (
            sum(m.energy_j[d] for d in cpu_domains) / phase.repetitions if cpu_domains else math.nan
        ),
        "cpu_source": "+".join(cpu_sources),
        "flags": ";".join(m.flags),
    }


def _format_of(target: Path, fmt: str | None) -> ExportFormat:
    formats: tuple[ExportFormat, ...] = get_args(ExportFormat)
    if fmt is not None:
        for known in formats:
            if fmt == known:
                return known
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(formats)}")
    inferred = EXPORT_SUFFIXES.get(target.suffix.lower())
    if inferred is None:
        raise ConfigError(
            f"cannot infer the export format of {target}: suffix {target.suffix!r} is not one of "
            f"{', '.join(EXPORT_SUFFIXES)} (or pass fmt= explicitly)"
        )
    return inferred


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with mixed-type object columns turned into strings.

    Config keys may hold an int in one run and a string in another; pyarrow needs one type per
    column, and CSV would have turned both into text anyway.
    """

    def is_missing(value: object) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    mixed = [
        name
        for name in frame.columns
        if frame[name].dtype == object and len({type(v) for v in frame[name] if not is_missing(v)}) > 1
    ]
    if not mixed:
        return frame
    frame = frame.copy()
    for name in mixed:
        frame[name] = [None if is_missing(v) else str(v) for v in frame[name]]
    return frame


def _write_atomically(frame: pd.DataFrame, target: Path, fmt: ExportFormat) -> None:
    """Encode `frame` in memory (a runs table is small), then write it atomically (`llm_energy.atomic`)."""
    if fmt == "csv":
        text = io.StringIO()
        frame.to_csv(text, index=False)
        data = text.getvalue().encode("utf-8")
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow", index=False)
        data = buffer.getvalue()
    write_atomically(target, data, error=StoreError, action="export runs to")

"""The table of runs: one row per run, every phase's time, energy and J/token in its own columns.

`frame_of_runs` is a pure function of `RunResult`s (pandas is imported when it is called); the store
returns it for stored runs (`Store.runs_frame`) and `export_runs` writes it to a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from llm_energy.records import Phase, PhaseResult, RunResult

if TYPE_CHECKING:
    import pandas as pd

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

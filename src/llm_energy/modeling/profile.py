"""`EnergyProfile`: a fitted model of one configuration plus the hardware and software it was measured on.

A profile is a JSON file (schema: `profile_schema.py`, format 2): metadata (model, engine, mode, GPU,
versions, env_id), the calibration table it was fitted on, the physical model (`physical.py`, the default),
the calibration grid (per-token energy and time, for `binned`/`p1`), the largest feasible batch per shape,
the parametric coefficients and the fit quality (leave-one-out errors). `llm-energy fit` and
`llm-energy calibrate` write one; `estimate` loads one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.atomic import write_atomically
from llm_energy.errors import ConfigError
from llm_energy.modeling.calibration import (
    CALIBRATION_COLUMNS,
    CalibrationGrid,
    calibration_table,
    max_feasible_batches,
)
from llm_energy.modeling.parametric import ParametricModel
from llm_energy.modeling.physical import PhysicalModel
from llm_energy.modeling.profile_schema import PROFILE_FORMAT, check_profile

BUNDLED_PROFILES = {
    "h200-llama-3.1-8b-vllm": "h200-llama-3.1-8b-vllm-cudagraphs.json",
    "h200-llama-3.1-8b-vllm-eager": "h200-llama-3.1-8b-vllm-eager.json",
    "h200-llama-3.1-8b-hf-eager": "h200-llama-3.1-8b-hf-eager.json",
    "h100-llama-3.1-8b-vllm": "h100-llama-3.1-8b-vllm-cudagraphs.json",
    "h100-llama-3.1-8b-hf-eager": "h100-llama-3.1-8b-hf-eager.json",
}
"""Profiles shipped in `llm_energy/data/profiles/`, fitted from the bundled calibration data."""
DEFAULT_PROFILE = "h200-llama-3.1-8b-vllm"
SIMULATION_PROFILES = ("h200-llama-3.1-8b-vllm", "h200-llama-3.1-8b-vllm-eager")
"""What `recommend --scorer simulate` weighs without --profile: every bundled profile of the default GPU and
model that the simulator can run (vLLM with CUDA graphs and eager: on the H200, eager measured the least
energy at 4× Azure conv, docs/results/recommend-online-h200.md)."""


@dataclass(frozen=True)
class EnergyProfile:
    """A fitted energy model of one (model, engine, mode, GPU) configuration."""

    model: str
    engine: str
    mode: str | None
    gpu_name: str
    gpu_count: int
    env_id: str
    versions: dict[str, Any]
    grid: CalibrationGrid
    feasible: dict[tuple[int, int], int]
    parametric: ParametricModel
    points: int
    fit_quality: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    source: str = ""
    physical: PhysicalModel | None = None
    calibration: pd.DataFrame | None = None
    """The calibration table the models were fitted on (`calibration.CALIBRATION_COLUMNS`)."""

    def describe(self) -> str:
        """One line naming what the profile stands for."""
        gpus = f"{self.gpu_count}× {self.gpu_name}"
        return f"{self.model} · {self.engine} {self.mode} · {gpus} · {self.points} points"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "format": PROFILE_FORMAT,
            "model": self.model,
            "engine": self.engine,
            "mode": self.mode,
            "gpu_name": self.gpu_name,
            "gpu_count": self.gpu_count,
            "env_id": self.env_id,
            "versions": self.versions,
            "grid": self.grid.to_dict(),
            "feasible": [[i, o, b] for (i, o), b in sorted(self.feasible.items())],
            "parametric": self.parametric.to_dict(),
            "physical": None if self.physical is None else self.physical.to_dict(),
            "calibration": [] if self.calibration is None else self.calibration.to_dict("records"),
            "points": self.points,
            "fit_quality": self.fit_quality,
            "created_at": self.created_at,
            "source": self.source,
        }

    def save(self, path: str | Path) -> None:
        """Write the profile atomically (temporary file + rename): an existing file is never half-written."""
        write_atomically(path, json.dumps(self.to_dict(), indent=1).encode(), action="write profile")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyProfile:
        """Inverse of `to_dict`."""
        return cls(
            model=data["model"],
            engine=data["engine"],
            mode=data.get("mode"),
            gpu_name=data["gpu_name"],
            gpu_count=int(data["gpu_count"]),
            env_id=data.get("env_id", ""),
            versions=data.get("versions", {}),
            grid=CalibrationGrid.from_dict(data["grid"]),
            feasible={(int(i), int(o)): int(b) for i, o, b in data["feasible"]},
            parametric=ParametricModel.from_dict(data["parametric"]),
            points=int(data["points"]),
            fit_quality=data.get("fit_quality", {}),
            created_at=data.get("created_at", ""),
            source=data.get("source", ""),
            physical=PhysicalModel.from_dict(data["physical"]) if data.get("physical") else None,
            calibration=(
                pd.DataFrame(data["calibration"], columns=list(CALIBRATION_COLUMNS))
                if data.get("calibration")
                else None
            ),
        )


def closest_bundled_profile(engine: str, mode: str | None, model: str, gpu_name: str) -> str:
    """The bundled profile nearest to (engine, mode, model, GPU): what to predict from before measuring.

    Same engine and mode (any mode when None) come first, then the same model, then the same GPU; with no
    profile of that engine, `DEFAULT_PROFILE`. An HF eager decode step is ~5x a vLLM CUDA-graphs one on the
    H200, so a prior from another engine mispredicts a calibration's time by as much.
    """
    matches = []
    for name in BUNDLED_PROFILES:
        p = load_profile(name)
        if p.engine == engine and (mode is None or p.mode == mode):
            matches.append(((p.model == model, p.gpu_name.lower() == gpu_name.lower()), name))
    # max() keeps the first of equals: BUNDLED_PROFILES' order breaks ties.
    return max(matches, key=lambda m: m[0])[1] if matches else DEFAULT_PROFILE


def load_profile(spec: str | Path | None = None) -> EnergyProfile:
    """Load a bundled profile by name (default: `DEFAULT_PROFILE`) or a profile file.

    Raises:
        ConfigError: unknown name, unreadable file, or not a profile (the message says which).
    """
    spec = str(spec) if spec is not None else DEFAULT_PROFILE
    if spec in BUNDLED_PROFILES:
        text = resources.files("llm_energy").joinpath("data", "profiles", BUNDLED_PROFILES[spec]).read_text()
        where = f"bundled profile {spec}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(
                f"no profile {spec!r}: not a file and not a bundled name ({', '.join(BUNDLED_PROFILES)})"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not an llm-energy profile (not UTF-8 text)") from None
        except OSError as exc:
            raise ConfigError(f"cannot read profile {path}: {exc}") from exc
        where = str(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not an llm-energy profile (not JSON: {exc})") from None
    try:
        return EnergyProfile.from_dict(check_profile(data, where))
    except (ValueError, KeyError, TypeError) as exc:  # the schema passed, the content is still inconsistent
        raise ConfigError(f"{where}: not a valid llm-energy profile: {exc}") from None


def configurations(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Return the distinct (model, engine, mode) of ok runs in a runs frame."""
    ok = frame[frame["status"] == "ok"]
    return sorted(
        {(str(m), str(e), str(md)) for m, e, md in zip(ok["model"], ok["engine"], ok["mode"], strict=True)}
    )


def fit_profile(
    frame: pd.DataFrame,
    *,
    model: str | None = None,
    engine: str | None = None,
    mode: str | None = None,
    source: str = "",
    idle_power_w: float | None = None,
    max_num_seqs: int | None = None,
    cross_validate: bool = True,
) -> EnergyProfile:
    """Fit a profile from `Store.runs_frame()` rows, selecting one configuration.

    Args:
        frame: `Store.runs_frame()` rows.
        model: Select runs of this model.
        engine: Select runs of this engine.
        mode: Select runs of this mode.
        source: Where the runs come from (stored in the profile).
        idle_power_w: Idle board power when the runs do not record it (else their median is used).
        max_num_seqs: The engine's concurrency cap when the runs do not record it.
        cross_validate: Compute the leave-one-out and extrapolation errors (one refit per point).

    Raises:
        ConfigError: the selection matches no run, or several configurations (they are listed).
    """
    f = _select(frame, model, engine, mode)
    configs = configurations(f)
    env_ids = sorted({str(x) for x in f.get("env_env_id", pd.Series(dtype=str)).dropna()})
    if len(env_ids) > 1:
        raise ConfigError(f"runs come from {len(env_ids)} environments (GPUs/software); fit one at a time")
    table = calibration_table(f)
    first = f[f["status"] == "ok"].iloc[0]
    versions = json.loads(first["env_versions"]) if isinstance(first.get("env_versions"), str) else {}
    gpu_name = str(first.get("env_gpu_name"))
    physical, report = fit_physical_of(
        f, table, configs[0][0], gpu_name, idle_power_w, cross_validate, max_num_seqs
    )
    # Cells no point measured take the physical model's value, not the nearest measured batch's.
    grid = CalibrationGrid.from_table(table, physical)
    return EnergyProfile(
        model=configs[0][0],
        engine=configs[0][1],
        mode=configs[0][2],
        gpu_name=gpu_name,
        gpu_count=int(first.get("env_gpu_count") or 1),
        env_id=env_ids[0] if env_ids else "",
        versions=versions,
        grid=grid,
        feasible=max_feasible_batches(f),
        parametric=ParametricModel.fit(table),
        points=len(table),
        fit_quality={**report, "energy_source": table.attrs.get("energy_source", "gpu")},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=source,
        physical=physical,
        calibration=table,
    )


def _select(frame: pd.DataFrame, model: str | None, engine: str | None, mode: str | None) -> pd.DataFrame:
    f = frame
    for col, value in (("model", model), ("engine", engine), ("mode", mode)):
        if value is not None:
            f = f[f[col] == value]
    configs = configurations(f)
    if not configs:
        raise ConfigError(
            "no successful runs match the selection; stored configurations: "
            + (", ".join("/".join(c) for c in configurations(frame)) or "none")
        )
    if len(configs) > 1:
        raise ConfigError(
            "several configurations stored; choose one with --model/--engine/--mode: "
            + ", ".join("/".join(c) for c in configs)
        )
    return f


def fit_physical_of(
    frame: pd.DataFrame,
    table: pd.DataFrame,
    model: str,
    gpu_name: str,
    idle_power_w: float | None,
    cross_validate: bool,
    max_num_seqs: int | None = None,
) -> tuple[PhysicalModel | None, dict[str, Any]]:
    """Fit the physical model of one configuration's runs; (None, reason) where it cannot be fitted."""
    from llm_energy.architectures import load_architecture
    from llm_energy.modeling.engine_facts import engine_limits
    from llm_energy.modeling.fitting import fit_physical
    from llm_energy.modeling.physical import ShapeConstants

    generic = False
    try:
        shape = ShapeConstants.of(load_architecture(model))
    except ConfigError:
        shape, generic = ShapeConstants.generic(), True
    limits = engine_limits(frame, shape, gpu_name, idle_power_w, max_num_seqs)
    if generic:  # no shape: no roofline floors, and the FLOP/byte units of the coefficients are per token
        limits = replace(limits, peak_flops=None, bandwidth_bps=None)
    try:
        physical, report = fit_physical(
            table,
            shape,
            idle_power_w=limits.idle_power_w,
            kv_capacity_tokens=limits.kv_capacity_tokens,
            max_num_seqs=limits.max_num_seqs,
            prefill_chunk_tokens=limits.prefill_chunk_tokens,
            peak_flops=limits.peak_flops,
            bandwidth_bps=limits.bandwidth_bps,
            cross_validate=cross_validate,
        )
    except ConfigError as exc:
        return None, {"physical": f"not fitted: {exc}"}
    report["limits"] = limits.describe()
    if generic:
        report["shape"] = f"{model!r} is not a bundled architecture: generic per-token terms (no roofline)"
    return physical, report

"""`EnergyProfile`: a fitted model of one configuration plus the hardware and software it was measured on.

A profile is a JSON file: metadata (model, engine, mode, GPU, versions, env_id), the calibration grid
(per-token energy and time), the largest feasible batch per shape, the parametric coefficients and the
fit quality (leave-one-out error of the grid). `llm-energy fit` writes one; `estimate` loads one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.atomic import write_atomically
from llm_energy.errors import ConfigError
from llm_energy.modeling.calibration import CalibrationGrid, calibration_table, max_feasible_batches
from llm_energy.modeling.parametric import ParametricModel

PROFILE_FORMAT = 1
BUNDLED_PROFILES = {
    "h100-llama-3.1-8b-vllm": "h100-llama-3.1-8b-vllm-cudagraphs.json",
    "h100-llama-3.1-8b-hf-eager": "h100-llama-3.1-8b-hf-eager.json",
}
"""Profiles shipped in `llm_energy/data/profiles/`, fitted from the bundled calibration data."""
DEFAULT_PROFILE = "h100-llama-3.1-8b-vllm"


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
    fit_quality: dict[str, float] = field(default_factory=dict)
    created_at: str = ""
    source: str = ""

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
        )


def load_profile(spec: str | Path | None = None) -> EnergyProfile:
    """Load a bundled profile by name (default: the H100 vLLM one) or a profile file.

    Raises:
        ConfigError: unknown name, unreadable file, or not a profile (the message says which).
    """
    spec = str(spec) if spec is not None else DEFAULT_PROFILE
    if spec in BUNDLED_PROFILES:
        text = resources.files("llm_energy").joinpath("data", "profiles", BUNDLED_PROFILES[spec]).read_text()
        where = f"bundled profile {spec}"
    else:
        path = Path(spec)
        if not path.exists():
            raise ConfigError(
                f"no profile {spec!r}: not a file and not a bundled name ({', '.join(BUNDLED_PROFILES)})"
            )
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read profile {path}: {exc}") from exc
        where = str(path)
    try:
        data = json.loads(text)
        if data.get("format") != PROFILE_FORMAT:
            raise ConfigError(f"{where}: not an llm-energy profile (format {data.get('format')!r})")
        return EnergyProfile.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: not a valid llm-energy profile: {exc}") from exc


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
) -> EnergyProfile:
    """Fit a profile from `Store.runs_frame()` rows, selecting one configuration.

    Raises:
        ConfigError: the selection matches no run, or several configurations (they are listed).
    """
    f = frame
    for col, value in (("model", model), ("engine", engine), ("mode", mode)):
        if value is not None:
            f = f[f[col] == value]
    configs = configurations(f)
    if not configs:
        raise ConfigError(
            "no successful runs match the selection; stored configurations: "
            + ", ".join("/".join(c) for c in configurations(frame))
        )
    if len(configs) > 1:
        raise ConfigError(
            "several configurations stored; choose one with --model/--engine/--mode: "
            + ", ".join("/".join(c) for c in configs)
        )
    env_ids = sorted({str(x) for x in f.get("env_env_id", pd.Series(dtype=str)).dropna()})
    if len(env_ids) > 1:
        raise ConfigError(f"runs come from {len(env_ids)} environments (GPUs/software); fit one at a time")
    table = calibration_table(f)
    grid = CalibrationGrid.from_table(table)
    first = f[f["status"] == "ok"].iloc[0]
    versions = json.loads(first["env_versions"]) if isinstance(first.get("env_versions"), str) else {}
    return EnergyProfile(
        model=configs[0][0],
        engine=configs[0][1],
        mode=configs[0][2],
        gpu_name=str(first.get("env_gpu_name")),
        gpu_count=int(first.get("env_gpu_count") or 1),
        env_id=env_ids[0] if env_ids else "",
        versions=versions,
        grid=grid,
        feasible=max_feasible_batches(f),
        parametric=ParametricModel.fit(table),
        points=len(table),
        fit_quality=leave_one_out(table),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=source,
    )


def leave_one_out(table: pd.DataFrame) -> dict[str, float]:
    """Interpolation error of the grid: each interior point predicted from the others (relative, total J)."""
    errors = []
    for k in range(len(table)):
        row = table.iloc[k]
        rest = table.drop(table.index[k])
        interior = all(rest[c].min() < row[c] < rest[c].max() for c in ("batch_size", "input_len"))
        if not interior or row["output_len"] < 2:
            continue
        try:
            grid = CalibrationGrid.from_table(rest)
        except ConfigError:
            continue
        b, i, o = row["batch_size"], row["input_len"], row["output_len"]
        pred = float(grid.prefill_j_per_token(b, i) * b * i + grid.decode_j_per_token(b, i, o) * b * (o - 1))
        actual = row["prefill_j"] + row["decode_j"]
        errors.append(abs(pred - actual) / actual)
    if not errors:
        return {}
    return {
        "loo_points": float(len(errors)),
        "loo_median_rel_error": float(np.median(errors)),
        "loo_max_rel_error": float(np.max(errors)),
    }

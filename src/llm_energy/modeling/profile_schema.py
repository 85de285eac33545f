"""The profile file's schema (format 2): every field typed, finite, positive where it must be, axes sorted.

A profile decides every estimate made from it, so a wrong one must fail on load with the field named, not
print a wrong total: an unsorted batch axis once gave a 12.6× wrong total with exit 0, negative energies
printed 0.0000 kWh, a missing key gave a bare `'model'`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_energy.errors import ConfigError

PROFILE_FORMAT = 2


def _finite(values: Any, *, positive: bool, what: str) -> None:
    flat = list(_flatten(values))
    for v in flat:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise ValueError(f"{what}: every value must be a finite number, got {v!r}")
        if positive and v < 0:
            raise ValueError(f"{what}: values must be ≥ 0, got {v!r}")


def _flatten(values: Any) -> Any:
    if isinstance(values, list | tuple):
        for v in values:
            yield from _flatten(v)
    else:
        yield values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridSchema(_Strict):
    """The calibration grid: axes strictly increasing and positive; per-token values finite and ≥ 0."""

    batches: list[float] = Field(min_length=1)
    inputs: list[float] = Field(min_length=1)
    outputs: list[float] = Field(min_length=1)
    prefill_j_per_tok: list[list[float]]
    decode_j_per_tok: list[list[list[float]]]
    prefill_s_per_batch: list[list[float]]
    decode_s_per_step: list[list[list[float]]]
    prefill_rel_unc: list[list[float]]
    decode_rel_unc: list[list[list[float]]]

    @model_validator(mode="after")
    def _check(self) -> GridSchema:
        for name in ("batches", "inputs", "outputs"):
            axis = getattr(self, name)
            _finite(axis, positive=True, what=f"grid.{name}")
            if any(b <= a for a, b in zip(axis, axis[1:], strict=False)) or axis[0] <= 0:
                raise ValueError(f"grid.{name} must be positive and strictly increasing, got {axis}")
        nb, ni, no = len(self.batches), len(self.inputs), len(self.outputs)
        for name in ("prefill_j_per_tok", "prefill_s_per_batch", "prefill_rel_unc"):
            arr = getattr(self, name)
            _finite(arr, positive=True, what=f"grid.{name}")
            if len(arr) != nb or any(len(r) != ni for r in arr):
                raise ValueError(f"grid.{name} must be {nb} × {ni} (batches × inputs)")
        for name in ("decode_j_per_tok", "decode_s_per_step", "decode_rel_unc"):
            arr = getattr(self, name)
            _finite(arr, positive=True, what=f"grid.{name}")
            if len(arr) != nb or any(len(r) != ni or any(len(c) != no for c in r) for r in arr):
                raise ValueError(f"grid.{name} must be {nb} × {ni} × {no} (batches × inputs × outputs)")
        return self


class ParametricSchema(_Strict):
    """The three-term fit."""

    prefill_coef: list[float] = Field(min_length=3, max_length=3)
    decode_coef: list[float] = Field(min_length=3, max_length=3)
    prefill_rms_rel_error: float = Field(ge=0)
    decode_rms_rel_error: float = Field(ge=0)

    @field_validator("prefill_coef", "decode_coef")
    @classmethod
    def _coef(cls, v: list[float]) -> list[float]:
        _finite(v, positive=True, what="parametric coefficients")
        return v


class PhysicalSchema(BaseModel):
    """The physical model: coefficients finite and ≥ 0, capacities positive."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shape: dict[str, float]
    prefill: dict[str, Any]
    decode: dict[str, Any]
    idle_power_w: float = Field(ge=0, allow_inf_nan=False)
    kv_capacity_tokens: float = Field(gt=0, allow_inf_nan=False)
    max_num_seqs: int | None = Field(default=None, ge=1)
    prefill_chunk_tokens: int = Field(ge=1)
    coverage: dict[str, list[float]]
    errors: dict[str, Any]

    @model_validator(mode="after")
    def _check(self) -> PhysicalSchema:
        _finite(list(self.shape.values()), positive=True, what="physical.shape")
        for phase in ("prefill", "decode"):
            block = getattr(self, phase)
            for key in ("time_s", "energy_j"):
                if key not in block:
                    raise ValueError(f"physical.{phase} needs {key!r}")
                _finite(block[key], positive=True, what=f"physical.{phase}.{key}")
        for key, span in self.coverage.items():
            _finite(span, positive=True, what=f"physical.coverage.{key}")
            if len(span) != 2 or span[0] > span[1] or span[0] <= 0:
                raise ValueError(
                    f"physical.coverage.{key} must be [low, high] with 0 < low ≤ high, got {span}"
                )
        for key in ("cv_rel", "meter_rel", "per_octave"):
            if key not in self.errors:
                raise ValueError(f"physical.errors needs {key!r}")
            _finite([self.errors[key]], positive=True, what=f"physical.errors.{key}")
        return self


class ProfileSchema(_Strict):
    """A whole profile file."""

    format: Literal[2]
    model: str = Field(min_length=1)
    engine: str = Field(min_length=1)
    mode: str | None
    gpu_name: str = Field(min_length=1)
    gpu_count: int = Field(ge=1)
    env_id: str = ""
    versions: dict[str, Any] = Field(default_factory=dict)
    grid: GridSchema
    feasible: list[list[int]]
    parametric: ParametricSchema
    physical: PhysicalSchema | None = None
    calibration: list[dict[str, float]] = Field(default_factory=list)
    points: int = Field(ge=0)
    fit_quality: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""
    source: str = ""

    @field_validator("feasible")
    @classmethod
    def _feasible(cls, v: list[list[int]]) -> list[list[int]]:
        for row in v:
            if len(row) != 3 or any(x < 1 for x in row):
                raise ValueError(f"feasible rows are [input, output, batch] of positive integers, got {row}")
        return v


def check_profile(data: Any, where: str) -> dict[str, Any]:
    """Validate a parsed profile file; return it as plain data.

    Raises:
        ConfigError: one line naming the file, the field and what is wrong.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: not an llm-energy profile (a JSON object is expected)")
    fmt = data.get("format")
    if fmt != PROFILE_FORMAT:
        hint = " (an older profile: refit it with `llm-energy fit`)" if fmt == 1 else ""
        raise ConfigError(
            f"{where}: not an llm-energy profile of format {PROFILE_FORMAT} (format {fmt!r}){hint}"
        )
    try:
        return ProfileSchema.model_validate(data).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "profile"
        raise ConfigError(f"{where}: invalid profile field {field}: {err['msg']}") from None

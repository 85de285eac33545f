"""What to measure: one `Point`, or a `SweepSpec` (YAML) that expands into many points.

Everything is validated before anything is loaded: an unknown key, a wrong type, an empty axis or an
impossible length raises one `ConfigError` naming the field (and, for YAML, its line), so the CLI exits
with status 2 and no GPU time is spent.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from llm_energy.architectures import SUPPORTED_DTYPES, Architecture, check_lengths, load_architecture
from llm_energy.engines import check_mode, check_tp, engine_descriptor
from llm_energy.engines.devices import check_device
from llm_energy.errors import ConfigError

Init = Literal["normal", "uniform", "zeros"]

GPU_SETTING_FIELDS = ("gpu_clock_mhz", "power_limit_w")
"""Point fields that change the GPU's settings; left out of dumps (and so of the id) while None."""

SHARED_GPU_NOTE = (
    "the GPUs we test on are shared and must stay as they are, so only allow it on a GPU you may "
    "reconfigure (the settings are restored after each point)"
)


MAX_BATCH_TOKENS = 2**31 - 1
"""Most tokens (batch x (input + output)) one batch may hold: more than any engine's tensors index."""

MAX_WINDOW_S = 3600.0
"""Longest window or idle measurement accepted (s): an hour per phase is a typo, not a plan."""

POINT_FIELDS_NOT_OPTIONS = ("mode", "device", "dtype", "init", "seed")
"""Point fields an engine's options must not set (the point's own field sets them)."""


def check_dtype(dtype: str) -> str:
    """Return `dtype` if the engines can run it.

    Raises:
        ValueError: an unknown dtype (the message lists the supported ones).
    """
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(SUPPORTED_DTYPES)}, got {dtype!r}")
    return dtype


def check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return `value` if it is a usable duration in seconds (finite, > 0 or >= 0, at most an hour).

    Raises:
        ConfigError: NaN, infinite, negative (or zero unless `allow_zero`) or over `MAX_WINDOW_S`.
    """
    low_ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= MAX_WINDOW_S):
        low = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a number of seconds {low} and <= {MAX_WINDOW_S:g}, got {value!r}")
    return value


class Point(BaseModel):
    """One configuration to measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="bundled architecture name or a local checkpoint directory")
    engine: str = Field("hf", description="engine name (see ENGINES)")
    mode: str | None = Field(None, description="engine mode, e.g. eager | compiled | cudagraphs")
    batch_size: int = Field(1, description="requests per batch")
    input_len: int = Field(512, description="input tokens per request")
    output_len: int = Field(128, description="output tokens per request (forced)")
    dtype: str = Field("bfloat16", description="bfloat16 | float16 | float32")
    init: Init | None = Field(None, description="random weight init; None = the engine's default")
    seed: int = Field(0, ge=0, lt=2**63, description="seed for weights and inputs")
    device: str = Field(
        "auto", description="auto (a CUDA GPU if torch sees one, else the CPU), cuda, cuda:N, cpu"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="engine-specific settings")
    gpu_clock_mhz: int | None = Field(
        None, gt=0, description="lock the SM clock to this (needs --allow-gpu-settings); None: as it is"
    )
    power_limit_w: float | None = Field(
        None, gt=0, description="set the GPU power limit (needs --allow-gpu-settings); None: as it is"
    )
    tp_size: int = Field(1, ge=1, description="tensor-parallel size: GPUs (ranks) of one model copy")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        return check_dtype(value)

    @model_serializer(mode="wrap")
    def _drop_unset_gpu_settings(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A point that changes no GPU setting dumps (and hashes) exactly as before these fields existed;
        # likewise a point on one device (tp_size 1).
        data: dict[str, Any] = handler(self)
        for name in GPU_SETTING_FIELDS:
            if data.get(name, 0) is None:
                del data[name]
        if data.get("tp_size") == 1:
            del data["tp_size"]
        return data

    @property
    def changes_gpu_settings(self) -> bool:
        """True when this point locks the SM clock or sets the power limit."""
        return self.gpu_clock_mhz is not None or self.power_limit_w is not None

    def point_id(self) -> str:
        """Return a stable id: sha256 of the canonical JSON of this point (unset GPU settings left out).

        `auto` hashes as `cuda`, the default before `auto` was: it is the GPU wherever there is one, and
        stored sweeps resume (the environment id tells a CPU-only host's runs apart).
        """
        data = self.model_dump()
        if data["device"] == "auto":
            data["device"] = "cuda"
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def group_key(self) -> tuple[str, str, str | None, str, str, str | None, int, str, int]:
        """Points sharing this key share one loaded model (model, engine, mode, options, TP size...)."""
        opts = json.dumps(self.options, sort_keys=True, default=str)
        return (
            self.model,
            self.engine,
            self.mode,
            self.dtype,
            self.device,
            self.init,
            self.seed,
            opts,
            self.tp_size,
        )


def _first_error(exc: ValidationError) -> tuple[tuple[Any, ...], str]:
    first = exc.errors()[0]
    return tuple(first["loc"]), str(first["msg"]).removeprefix("Value error, ")


def make_point(**fields: Any) -> Point:
    """Validate `fields` into a `Point`: names, mode and lengths are checked against the model.

    Raises:
        ConfigError: a field is invalid; the message names it.
    """
    try:
        point = Point(**fields)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        raise ConfigError(f"invalid {'.'.join(map(str, loc))}: {msg}") from exc
    mode = check_mode(point.engine, point.mode)
    _check_engine_options(point.engine, mode, point.options)
    for name in ("batch_size", "input_len", "output_len"):
        if getattr(point, name) <= 0:
            raise ConfigError(f"{name} must be > 0 (got {getattr(point, name)})")
    tokens = point.batch_size * (point.input_len + point.output_len)
    if tokens > MAX_BATCH_TOKENS:
        raise ConfigError(
            f"batch_size {point.batch_size} x (input_len {point.input_len} + output_len {point.output_len}) "
            f"= {tokens:.3g} tokens in one batch; at most {MAX_BATCH_TOKENS:,} (2**31 - 1)"
        )
    arch: Architecture | None = None
    if not engine_descriptor(point.engine).simulated:  # a simulated engine runs no model
        arch = load_architecture(point.model)
        check_lengths(arch, point.input_len, point.output_len, point.batch_size)
    if point.tp_size > 1:  # engine, mode and heads; the visible GPUs are checked where it runs
        check_tp(point.engine, mode, point.tp_size, arch)
        if point.changes_gpu_settings:
            raise ConfigError(f"tp_size = {point.tp_size} with GPU settings: settings apply to one GPU only")
    return point.model_copy(update={"mode": mode})


def _check_engine_options(engine: str, mode: str, options: dict[str, Any]) -> None:
    """Validate engine-specific options against the engine's own Config (no heavy import).

    Raises:
        ConfigError: an unknown option or a bad value, named.
    """
    from llm_energy.engines import engine_class

    for key in options:
        if key in POINT_FIELDS_NOT_OPTIONS:
            raise ConfigError(
                f"engine {engine!r}: option {key!r} is the point's own field; set it as {key} "
                f"(sweep spec) or --{key} (measure), not as an engine option"
            )
    try:
        engine_class(engine).Config(mode=mode, **options)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        raise ConfigError(f"engine {engine!r}: invalid {'.'.join(map(str, loc))}: {msg}") from exc


class EngineSpec(BaseModel):
    """One engine entry of a sweep: `{engine: hf, mode: cudagraphs}`; other keys are engine options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    engine: str
    mode: str | None = None


class SweepSpec(BaseModel):
    """A grid of points: models x engines x batch sizes x input lengths x output lengths.

    The optional axes `gpu_clocks_mhz` and `power_limits_w` multiply the grid further; they change
    the GPU's settings for each point (restored after it), so they need `allow_gpu_settings: true`
    here or `--allow-gpu-settings` on the command line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        "sweep",
        min_length=1,
        description="name of the sweep, stored with every run (default: the file's name)",
    )
    models: list[str] = Field(min_length=1, description="architectures or checkpoint dirs")
    engines: list[EngineSpec] = Field(min_length=1, description="engine entries")
    batch_sizes: list[int] = Field(min_length=1)
    input_lens: list[int] = Field(min_length=1)
    output_lens: list[int] = Field(min_length=1)
    repeats: int = Field(1, ge=1, description="independent measurements per point")
    seed: int = 0
    dtype: str = "bfloat16"
    device: str = Field(
        "auto", description="auto (a CUDA GPU if torch sees one, else the CPU), cuda, cuda:N, cpu"
    )
    init: Init | None = None
    window_s: float = Field(
        2.0,
        gt=0,
        le=MAX_WINDOW_S,
        allow_inf_nan=False,
        description="each phase window lasts at least this long",
    )
    idle_s: float = Field(
        2.0, ge=0, le=MAX_WINDOW_S, allow_inf_nan=False, description="idle power measured per loaded group"
    )
    time_limit_s: float | None = Field(
        None, gt=0, description="per point; local: no further repeats once exceeded; ray: the point is killed"
    )
    gpu_clocks_mhz: list[int] | None = Field(
        None, min_length=1, description="SM clocks to lock, one point each (changes the GPU's settings)"
    )
    power_limits_w: list[float] | None = Field(
        None, min_length=1, description="power limits to set, one point each (changes the GPU's settings)"
    )
    allow_gpu_settings: bool = Field(
        False, description="consent to the GPU-settings axes (same as --allow-gpu-settings)"
    )
    tp_sizes: list[int] = Field(
        [1], min_length=1, description="tensor-parallel sizes (GPUs per model copy), one group each"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        return check_dtype(value)

    @field_validator("batch_sizes", "input_lens", "output_lens", "tp_sizes")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v <= 0]
        if bad:
            raise ValueError(f"every value must be > 0 (got {bad[0]})")
        return sorted(set(values))

    @field_validator("gpu_clocks_mhz", "power_limits_w")
    @classmethod
    def _positive_settings(cls, values: list[Any] | None) -> list[Any] | None:
        if values is None:
            return None
        bad = [v for v in values if v <= 0]
        if bad:
            raise ValueError(f"every value must be > 0 (got {bad[0]})")
        return sorted(set(values))

    @property
    def changes_gpu_settings(self) -> bool:
        """True when the spec has a GPU-settings axis."""
        return bool(self.gpu_clocks_mhz or self.power_limits_w)

    def check_gpu_settings_allowed(self, allow: bool = False) -> None:
        """Refuse a spec with GPU-settings axes unless the spec or the caller (`allow`) consents.

        Raises:
            ConfigError: settings axes without `allow_gpu_settings: true` or `--allow-gpu-settings`.
        """
        if not self.changes_gpu_settings or allow or self.allow_gpu_settings:
            return
        axes = ", ".join(
            f"{name}: {getattr(self, name)}"
            for name in ("gpu_clocks_mhz", "power_limits_w")
            if getattr(self, name)
        )
        raise ConfigError(
            f"sweep {self.name!r} changes GPU settings ({axes}): that needs `allow_gpu_settings: true` "
            f"in the spec or --allow-gpu-settings; {SHARED_GPU_NOTE}"
        )

    def points(self) -> list[Point]:
        """Expand into points, grouped by loaded model and, within a shape, by increasing batch size.

        GPU settings vary fastest: each batch size is measured at every clock x power limit in turn
        (the model stays loaded; only the settings change between points).

        Raises:
            ConfigError: an engine, mode or length is invalid for a model (names the value).
        """
        out: list[Point] = []
        for model in self.models:
            for eng, tp_size in ((e, t) for e in self.engines for t in self.tp_sizes):
                options = dict(eng.model_extra or {})
                for input_len in self.input_lens:
                    for output_len in self.output_lens:
                        for batch_size in self.batch_sizes:
                            for settings in self._gpu_settings_grid():
                                out.append(
                                    make_point(
                                        model=model,
                                        engine=eng.engine,
                                        mode=eng.mode,
                                        batch_size=batch_size,
                                        input_len=input_len,
                                        output_len=output_len,
                                        dtype=self.dtype,
                                        init=self.init,
                                        seed=self.seed,
                                        device=self.device,
                                        options=options,
                                        tp_size=tp_size,
                                        **settings,
                                    )
                                )
        return out

    def _gpu_settings_grid(self) -> list[dict[str, Any]]:
        """Every clock x power-limit combination as Point fields ([{}] without settings axes)."""
        grid: list[dict[str, Any]] = []
        clocks_mhz: list[int | None] = [*self.gpu_clocks_mhz] if self.gpu_clocks_mhz else [None]
        limits_w: list[float | None] = [*self.power_limits_w] if self.power_limits_w else [None]
        for clock_mhz in clocks_mhz:
            for limit_w in limits_w:
                fields = {"gpu_clock_mhz": clock_mhz, "power_limit_w": limit_w}
                grid.append({k: v for k, v in fields.items() if v is not None})
        return grid


def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Return the 1-based line of the YAML node at `loc` (or of its nearest existing parent)."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == key]
            if not match:
                break
            node = match[0][1]
            line = match[0][0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_spec(text: str, source: str = "<spec>", default_name: str = "sweep") -> SweepSpec:
    """Parse and validate sweep YAML (safe_load only); without `name:` the sweep is `default_name`.

    Raises:
        ConfigError: malformed YAML, an unknown key, a wrong type or an empty axis: the message names
            the field and its line.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a sweep spec must be a mapping of keys (name, models, engines, ...)")
    data.setdefault("name", default_name)
    try:
        spec = SweepSpec(**data)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        line = _yaml_line(text, loc)
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{source}: {where}{'.'.join(map(str, loc))}: {msg}") from exc
    problem = _check_names_and_lengths(spec)
    if problem is not None:
        loc, msg = problem
        line = _yaml_line(text, loc)
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{source}: {where}{'.'.join(map(str, loc))}: {msg}")
    return spec


def _check_names_and_lengths(spec: SweepSpec) -> tuple[tuple[Any, ...], str] | None:
    """Return (location, message) of the first unknown model/engine/mode, bad option or impossible length."""
    for i, eng in enumerate(spec.engines):
        try:
            _check_engine_options(eng.engine, check_mode(eng.engine, eng.mode), dict(eng.model_extra or {}))
        except ConfigError as exc:
            return ("engines", i), str(exc)
    if all(engine_descriptor(eng.engine).simulated for eng in spec.engines):
        return None
    for j, model in enumerate(spec.models):
        try:
            arch = load_architecture(model)
        except ConfigError as exc:
            return ("models", j), str(exc)
        longest = max(spec.input_lens) + max(spec.output_lens)
        if longest > arch.max_context_tokens:
            return ("input_lens",), (
                f"input {max(spec.input_lens)} + output {max(spec.output_lens)} = {longest} tokens exceeds "
                f"{model}'s context of {arch.max_context_tokens}"
            )
    return None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec file.

    Raises:
        ConfigError: the file cannot be read or is invalid.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read sweep spec {path}: {exc}") from exc
    return parse_spec(text, str(path), default_name=Path(path).stem or "sweep")

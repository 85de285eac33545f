"""The configuration of one measured point, validated before anything is loaded.

A `Point` names the model, engine and mode, the batch geometry and the weight initialisation.
Invalid values raise `ConfigError` naming the field, so the CLI can exit with status 2 before it
builds a model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_energy.architectures import check_lengths, load_architecture
from llm_energy.engines import check_mode
from llm_energy.errors import ConfigError


class Point(BaseModel):
    """One configuration to measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="bundled architecture name or a local checkpoint directory")
    engine: str = Field("hf", description="engine name (see `llm-energy models` / ENGINES)")
    mode: str | None = Field(None, description="engine mode, e.g. eager | compiled | cudagraphs")
    batch_size: int = Field(1, description="requests per batch")
    input_len: int = Field(512, description="input tokens per request")
    output_len: int = Field(128, description="output tokens per request (forced)")
    dtype: str = Field("bfloat16", description="bfloat16 | float16 | float32")
    init: Literal["normal", "uniform", "zeros"] | None = Field(
        None, description="random weight init; None = the engine's default (hf: normal, vllm: uniform)"
    )
    seed: int = Field(0, description="seed for weights and inputs")
    device: str = Field("cuda", description="cuda, cuda:N or cpu")

    def point_id(self) -> str:
        """Return a stable id: sha256 of the canonical JSON of this point."""
        blob = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_point(**fields: Any) -> Point:
    """Validate `fields` into a `Point`: names, mode and lengths are checked against the model.

    Raises:
        ConfigError: a field is invalid; the message names it.
    """
    try:
        point = Point(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid {where}: {first['msg']}") from exc
    mode = check_mode(point.engine, point.mode)
    for name in ("batch_size", "input_len", "output_len"):
        if getattr(point, name) <= 0:
            raise ConfigError(f"{name} must be > 0 (got {getattr(point, name)})")
    if point.engine != "simulated":
        arch = load_architecture(point.model)
        check_lengths(arch, point.input_len, point.output_len, point.batch_size)
    return point.model_copy(update={"mode": mode})

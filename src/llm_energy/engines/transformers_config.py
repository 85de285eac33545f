"""Fields every transformers-based engine's configuration shares (`hf`, `hf-paged`, `hf-spec`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TransformersConfig(BaseModel):
    """Device, dtype, random-weight init and seed; each engine adds its mode and knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field("cuda", description="torch device: cuda, cuda:1, cpu")
    dtype: str = Field("bfloat16", description="weights and activations dtype")
    init: Literal["normal", "uniform", "zeros"] = Field("normal", description="random weight init")
    seed: int = Field(0, description="seed for weights and input token ids")

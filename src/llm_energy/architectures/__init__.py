"""Model shapes: bundled configs, a random-weight model builder, and parameter/FLOP/byte counts.

Importing this package does not import torch or transformers; only `build_model` and `meta_param_count` do,
when called.
"""

from __future__ import annotations

from llm_energy.architectures.build import (
    INIT_SCHEMES,
    SUPPORTED_DTYPES,
    UNIFORM_INIT_BOUND,
    Init,
    build_model,
    meta_param_count,
    reinit_parameters,
    supported_dtypes,
    torch_dtype,
)
from llm_energy.architectures.counts import (
    decode_flops,
    embedding_param_count,
    flops_per_token,
    kv_cache_bytes,
    matmul_param_count,
    non_embedding_param_count,
    param_count,
    prefill_flops,
    weight_bytes,
)
from llm_energy.architectures.registry import (
    ARCHITECTURE_NAMES,
    Architecture,
    architecture_names,
    check_lengths,
    load_architecture,
)

__all__ = [
    "ARCHITECTURE_NAMES",
    "INIT_SCHEMES",
    "SUPPORTED_DTYPES",
    "UNIFORM_INIT_BOUND",
    "Architecture",
    "Init",
    "architecture_names",
    "build_model",
    "reinit_parameters",
    "check_lengths",
    "decode_flops",
    "embedding_param_count",
    "flops_per_token",
    "kv_cache_bytes",
    "load_architecture",
    "matmul_param_count",
    "meta_param_count",
    "non_embedding_param_count",
    "param_count",
    "prefill_flops",
    "supported_dtypes",
    "torch_dtype",
    "weight_bytes",
]

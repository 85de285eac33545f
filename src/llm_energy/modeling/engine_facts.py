"""What bounds an engine's batch and chunk, read from the runs it was calibrated with.

The physical model limits a batch by the KV cache and the engine's `max_num_seqs`, never by the largest batch
the calibration happened to run. These come from the engine's own facts stored with each run (vLLM reports its
KV blocks, block size and scheduler token budget); where a run lacks them they are derived from the GPU's
memory and the model shape, and `describe()` says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.modeling.physical import ShapeConstants

DEFAULT_CHUNK_TOKENS = 8192
"""Prefill tokens per forward pass when the engine does not say (vLLM's default batched-token budget of a
server; a static HF batch prefills in one pass: `passes` then takes the whole batch as one chunk)."""


@dataclass(frozen=True)
class EngineLimits:
    """Idle power, KV capacity, concurrency cap, prefill chunk and the GPU's peaks, and their sources."""

    idle_power_w: float
    kv_capacity_tokens: float
    max_num_seqs: int | None
    prefill_chunk_tokens: int
    peak_flops: float | None
    bandwidth_bps: float | None
    sources: dict[str, str]

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {k: v for k, v in self.__dict__.items()}


def _facts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for cell in frame.get("engine_facts", pd.Series(dtype=object)).dropna():
        try:
            facts = json.loads(cell) if isinstance(cell, str) else dict(cell)
        except (ValueError, TypeError):
            continue
        if isinstance(facts, dict):
            out.append(facts)
    return out


def _first(frame: pd.DataFrame, facts: list[dict[str, Any]], key: str) -> Any:
    values = [f[key] for f in facts if f.get(key) is not None]
    if values:
        return values[0]
    if key in frame.columns:
        col = frame[key].dropna()
        if len(col):
            return col.iloc[0]
    return None


def _gpu_memory_bytes(frame: pd.DataFrame) -> float | None:
    for cell in frame.get("env_gpus", pd.Series(dtype=object)).dropna():
        try:
            gpus = json.loads(cell) if isinstance(cell, str) else cell
            return float(gpus[0]["memory_total_bytes"])
        except (ValueError, TypeError, KeyError, IndexError):
            continue
    return None


def engine_limits(
    frame: pd.DataFrame,
    shape: ShapeConstants,
    gpu_name: str,
    idle_power_w: float | None = None,
    max_num_seqs: int | None = None,
) -> EngineLimits:
    """Read (or derive, and say so) the limits of the engine that produced `frame`'s runs."""
    from llm_energy.errors import ConfigError
    from llm_energy.meters.gpus import gpu_spec
    from llm_energy.modeling.fitting import kv_capacity_from_memory

    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    facts = _facts(ok)
    sources: dict[str, str] = {}
    idle = idle_power_w
    sources["idle_power_w"] = "given"
    if "idle_power_w" in ok.columns and ok["idle_power_w"].notna().any():
        idle = float(np.nanmedian(ok["idle_power_w"].to_numpy(float)))
        sources["idle_power_w"] = "median idle power measured before the runs"
    if idle is None:
        idle, sources["idle_power_w"] = 0.0, "unknown (0): dynamic energy not separable"
    blocks, block = _first(ok, facts, "kv_cache_blocks"), _first(ok, facts, "kv_block_tokens")
    peak: float | None = None
    bw: float | None = None
    try:
        spec = gpu_spec(gpu_name)
        peak, bw = spec.peak_bf16_flops, spec.memory_bandwidth_bps
    except ConfigError:
        pass
    if blocks and block:
        kv = float(blocks) * float(block)
        sources["kv_capacity_tokens"] = f"engine: {int(blocks)} KV blocks × {int(block)} tokens"
    else:
        memory = _gpu_memory_bytes(ok)
        util = _first(ok, facts, "gpu_memory_utilization") or 0.9
        kv = float(kv_capacity_from_memory(shape, memory, utilisation=float(util))) if memory else 0.0
        if kv <= 0 or memory is None:
            kv = float(shape.max_context_tokens) * float(ok["batch_size"].max())
            sources["kv_capacity_tokens"] = "unknown GPU memory: the largest batch ran × the model's context"
        else:
            sources["kv_capacity_tokens"] = (
                f"GPU memory {memory / 1e9:.1f} GB × {util} − weights − 8% reserve"
            )
    seqs = _first(ok, facts, "max_num_seqs")
    sources["max_num_seqs"] = "engine" if seqs else "none (static batches: KV capacity only)"
    if max_num_seqs is not None:
        seqs, sources["max_num_seqs"] = max_num_seqs, "given"
    elif not seqs and sources["kv_capacity_tokens"].startswith("unknown"):
        # Nothing bounds the batch (no engine cap, no memory figure): the largest batch run is all we know.
        seqs = int(ok["batch_size"].max())
        sources["max_num_seqs"] = (
            "the largest batch the calibration ran (no engine limit or GPU memory known)"
        )
    chunk = _first(ok, facts, "scheduler_max_num_batched_tokens") or _first(
        ok, facts, "max_num_batched_tokens"
    )
    if chunk:
        sources["prefill_chunk_tokens"] = "engine"
    elif ok.get("engine", pd.Series(["?"])).iloc[0] == "vllm":
        chunk, sources["prefill_chunk_tokens"] = (
            DEFAULT_CHUNK_TOKENS,
            "vLLM default (not recorded by the runs)",
        )
    else:
        # A static engine prefills the whole padded batch in one forward pass.
        chunk, sources["prefill_chunk_tokens"] = 1 << 40, "one pass per batch (static engine)"
    return EngineLimits(float(idle), kv, int(seqs) if seqs else None, int(chunk), peak, bw, sources)

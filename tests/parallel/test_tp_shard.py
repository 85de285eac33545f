"""TP weights built shard by shard (the path for models too big to build whole on one device)."""

from __future__ import annotations

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngineConfig
from llm_energy.engines.hf_tp import TPEngine, resolve_weights

pytest.importorskip("torch")


def test_auto_builds_whole_models_only_when_small() -> None:
    assert resolve_weights(load_architecture("tiny"), "float32", "auto") == "full"
    assert resolve_weights(load_architecture("llama-3.1-8b"), "bfloat16", "auto") == "shard"
    assert resolve_weights(load_architecture("llama-3.1-8b"), "bfloat16", "full") == "full"


def test_shard_weights_run_and_every_rank_agrees() -> None:
    from torch.distributed.tensor import DTensor

    config = HFEngineConfig(device="cpu", dtype="float32", init="uniform", seed=3)
    engine = TPEngine(config, load_architecture("tiny"), tp_size=2, weights="shard", timeout_s=120)
    try:
        engine.load()
        engine.prepare(Batch(2, 8, 5))
        assert engine.generate() == 2 * 5
        first, second = engine.rank_outputs()
        assert first == second and len(first) == 2 and all(len(row) == 5 for row in first)
        assert engine.describe()["tp_weights"] == "shard"
        model = engine.local.model
        q_proj = model.model.layers[0].self_attn.q_proj.weight
        assert isinstance(q_proj, DTensor)
        assert q_proj.to_local().shape[0] == q_proj.shape[0] // 2  # rank 0 holds half the heads
        for param in model.parameters():
            local = param.to_local() if isinstance(param, DTensor) else param
            assert float(local.detach().abs().max()) <= 1e-3  # uniform init on every shard
    finally:
        engine.close()

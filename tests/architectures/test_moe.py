"""MoE and OLMo shapes: total vs active parameters, FLOPs on active parameters, a tiny MoE forward."""

from __future__ import annotations

from typing import Any

import pytest

from llm_energy.architectures import (
    Architecture,
    decode_flops,
    flops_per_token,
    load_architecture,
    matmul_param_count,
    param_count,
    prefill_flops,
    weight_bytes,
)
from llm_energy.architectures.counts import active_param_count, experts_per_token, num_experts
from llm_energy.errors import ConfigError

MOE_NAMES = ("mixtral-8x7b", "olmoe-1b-7b")
DENSE_NAMES = ("llama-3.1-8b", "llama-3.2-1b", "olmo-1b", "olmo-7b", "qwen2.5-0.5b", "tiny")

TINY_OLMOE: dict[str, Any] = {
    "model_type": "olmoe",
    "hidden_size": 64,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 512,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}
TINY_MIXTRAL: dict[str, Any] = {
    "model_type": "mixtral",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "vocab_size": 512,
    "max_position_embeddings": 256,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}


def _arch(config: dict[str, Any], **overrides: Any) -> Architecture:
    return Architecture(name=f"tiny-{config['model_type']}", config={**config, **overrides}, path=None)


def test_published_sizes_of_the_olmo_trio_and_mixtral() -> None:
    """OLMoE-1B-7B has OLMo-1B's active and OLMo-7B's total parameters; Mixtral is 12.9 B of 46.7 B."""
    olmoe, olmo1, olmo7 = (load_architecture(n) for n in ("olmoe-1b-7b", "olmo-1b", "olmo-7b"))
    mixtral = load_architecture("mixtral-8x7b")
    assert param_count(olmoe) == 6_919_161_856
    assert active_param_count(olmoe) == 1_282_017_280
    assert param_count(olmo1) == 1_176_764_416
    assert param_count(olmo7) == 6_888_095_744
    assert param_count(mixtral) == 46_702_792_704
    assert active_param_count(mixtral) == 12_879_925_248
    assert active_param_count(olmoe) == pytest.approx(active_param_count(olmo1), rel=0.1)
    assert param_count(olmoe) == pytest.approx(param_count(olmo7), rel=0.01)


@pytest.mark.parametrize("name", DENSE_NAMES)
def test_dense_models_have_no_experts_and_active_equals_total(name: str) -> None:
    arch = load_architecture(name)
    assert (num_experts(arch), experts_per_token(arch)) == (0, 0)
    assert active_param_count(arch) == param_count(arch)
    assert matmul_param_count(arch) == matmul_param_count(arch, active=False)


@pytest.mark.parametrize("name", MOE_NAMES)
def test_moe_active_count_drops_the_unused_experts(name: str) -> None:
    """Active = total − L·(E − k)·3·h·f: each token skips E − k gated-MLP experts per layer."""
    arch = load_architecture(name)
    e, k = num_experts(arch), experts_per_token(arch)
    expert = 3 * arch.hidden_size * arch.intermediate_size
    assert param_count(arch) - active_param_count(arch) == arch.num_layers * (e - k) * expert
    total_minus_active_matmul = matmul_param_count(arch, active=False) - matmul_param_count(arch)
    assert total_minus_active_matmul == arch.num_layers * (e - k) * expert


def test_moe_shapes_and_expert_counts() -> None:
    olmoe = load_architecture("olmoe-1b-7b")
    assert olmoe.model_type == "olmoe"
    assert (olmoe.hidden_size, olmoe.num_layers, olmoe.num_heads) == (2048, 16, 16)
    assert olmoe.intermediate_size == 1024
    assert (num_experts(olmoe), experts_per_token(olmoe), olmoe.vocab_size) == (64, 8, 50304)
    mixtral = load_architecture("mixtral-8x7b")
    assert (mixtral.hidden_size, mixtral.num_layers) == (4096, 32)
    assert (mixtral.num_heads, mixtral.num_kv_heads) == (32, 8)
    assert (num_experts(mixtral), experts_per_token(mixtral), mixtral.intermediate_size) == (8, 2, 14336)
    assert mixtral.vocab_size == 32000
    for name in ("olmo-1b", "olmo-7b"):
        assert load_architecture(name).model_type == "olmo"
    assert load_architecture("olmo-1b").tie_embeddings is True
    assert load_architecture("olmo-7b").tie_embeddings is False


@pytest.mark.parametrize("name", MOE_NAMES)
def test_flops_use_active_parameters_and_memory_uses_total(name: str) -> None:
    """Per token the arithmetic runs through k experts; the weights in memory hold all E."""
    arch = load_architecture(name)
    assert flops_per_token(arch, 1) == pytest.approx(2 * matmul_param_count(arch), rel=1e-3)
    assert flops_per_token(arch, 1) < flops_per_token(arch, 1, active=False)
    slope = 4 * arch.num_layers * arch.num_heads * arch.head_dim
    assert flops_per_token(arch, 101, active=False) - flops_per_token(arch, 1, active=False) == 100 * slope
    expected = sum(flops_per_token(arch, 30 + j) for j in range(1, 10))
    assert decode_flops(arch, 2, 30, 10) == 2 * expected
    expected_total = sum(flops_per_token(arch, 30 + j, active=False) for j in range(1, 10))
    assert decode_flops(arch, 1, 30, 10, active=False) == expected_total
    all_positions = sum(flops_per_token(arch, i + 1) for i in range(17))
    assert prefill_flops(arch, 1, 17, logits_for_all_tokens=True) == all_positions
    assert prefill_flops(arch, 1, 17, active=False) > prefill_flops(arch, 1, 17)
    assert weight_bytes(arch) == 2.0 * param_count(arch)


def test_olmoe_active_flops_match_olmo_1b_within_a_fifth() -> None:
    """The seed's comparison: OLMoE-1B-7B does about OLMo-1B's arithmetic per token, not OLMo-7B's."""
    olmoe, olmo1, olmo7 = (load_architecture(n) for n in ("olmoe-1b-7b", "olmo-1b", "olmo-7b"))
    assert flops_per_token(olmoe, 512) == pytest.approx(flops_per_token(olmo1, 512), rel=0.2)
    assert flops_per_token(olmoe, 512) < 0.3 * flops_per_token(olmo7, 512)


@pytest.mark.parametrize(
    ("config", "overrides"),
    [
        (TINY_OLMOE, {}),
        (TINY_OLMOE, {"attention_bias": True}),
        (TINY_OLMOE, {"num_key_value_heads": 2, "tie_word_embeddings": True}),
        (TINY_MIXTRAL, {}),
        (TINY_MIXTRAL, {"head_dim": 8}),
    ],
)
def test_tiny_moe_param_count_matches_transformers(config: dict[str, Any], overrides: dict[str, Any]) -> None:
    pytest.importorskip("transformers")
    from llm_energy.architectures import meta_param_count

    arch = _arch(config, **overrides)
    assert param_count(arch) == meta_param_count(arch)


@pytest.mark.parametrize("overrides", [{"attention_bias": True}, {"tie_word_embeddings": True}])
def test_olmo_options_match_transformers(overrides: dict[str, Any]) -> None:
    pytest.importorskip("transformers")
    from llm_energy.architectures import meta_param_count

    config = dict(load_architecture("olmo-1b").config)
    config.update(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
    config.update(num_key_value_heads=2, vocab_size=300, **overrides)
    arch = Architecture(name="tiny-olmo", config=config, path=None)
    assert param_count(arch) == meta_param_count(arch)


@pytest.mark.parametrize("k", [0, 9, None])
def test_moe_config_with_bad_experts_per_token_is_a_config_error(k: int | None) -> None:
    arch = _arch(TINY_OLMOE, num_experts_per_tok=k)
    with pytest.raises(ConfigError, match="num_experts_per_tok"):
        active_param_count(arch)


@pytest.mark.parametrize("config", [TINY_OLMOE, TINY_MIXTRAL])
def test_tiny_moe_forward_on_cpu(config: dict[str, Any]) -> None:
    """A random-weight MoE builds and runs a forward pass on the CPU with finite logits."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from llm_energy.architectures import build_model

    model = build_model(_arch(config), dtype="float32", seed=0)
    assert sum(p.numel() for p in model.parameters()) == param_count(_arch(config))
    ids = torch.randint(0, 512, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (2, 7, 512)
    assert torch.isfinite(logits).all()

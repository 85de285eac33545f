from __future__ import annotations

from typing import Any

import pytest

from llm_energy.architectures import (
    ARCHITECTURE_NAMES,
    Architecture,
    decode_flops,
    embedding_param_count,
    flops_per_token,
    kv_cache_bytes,
    load_architecture,
    matmul_param_count,
    non_embedding_param_count,
    param_count,
    prefill_flops,
    weight_bytes,
)
from llm_energy.errors import ConfigError

EXPECTED_PARAMS = {
    "llama-3.1-8b": (8.00e9, 8.06e9),
    "llama-3.2-1b": (1.23e9, 1.25e9),
    "qwen2.5-0.5b": (0.485e9, 0.50e9),
}


def _tiny_variant(**overrides: Any) -> Architecture:
    config = dict(load_architecture("tiny").config)
    config.update(overrides)
    return Architecture(name="tiny-variant", config=config, path=None)


@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_param_count_matches_the_transformers_model(name: str) -> None:
    """The analytic count equals the parameters of the real model class (built on the meta device)."""
    pytest.importorskip("transformers")
    from llm_energy.architectures import meta_param_count

    arch = load_architecture(name)
    assert param_count(arch) == meta_param_count(arch)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_param_count_matches_published_sizes(name: str) -> None:
    low, high = EXPECTED_PARAMS[name]
    assert low <= param_count(load_architecture(name)) <= high


def test_param_count_exact_values() -> None:
    assert param_count(load_architecture("llama-3.1-8b")) == 8_030_261_248
    assert param_count(load_architecture("llama-3.2-1b")) == 1_235_814_400
    assert param_count(load_architecture("qwen2.5-0.5b")) == 494_032_768


@pytest.mark.parametrize(
    "overrides",
    [
        {"attention_bias": True},
        {"mlp_bias": True},
        {"tie_word_embeddings": True},
        {"head_dim": 32},
        {"num_key_value_heads": None},
    ],
)
def test_param_count_matches_transformers_for_llama_options(overrides: dict[str, Any]) -> None:
    pytest.importorskip("transformers")
    from llm_energy.architectures import meta_param_count

    arch = _tiny_variant(**overrides)
    assert param_count(arch) == meta_param_count(arch)


@pytest.mark.parametrize("name", ARCHITECTURE_NAMES)
def test_embedding_and_non_embedding_add_up(name: str) -> None:
    arch = load_architecture(name)
    assert embedding_param_count(arch) + non_embedding_param_count(arch) == param_count(arch)
    copies = 1 if arch.tie_embeddings else 2
    assert embedding_param_count(arch) == copies * arch.vocab_size * arch.hidden_size


def test_matmul_params_count_the_lm_head_even_when_tied() -> None:
    """A tied lm_head is stored once but still multiplied once per token; the embedding lookup is not."""
    arch = load_architecture("llama-3.2-1b")
    h = arch.hidden_size
    norms = (2 * arch.num_layers + 1) * h
    assert matmul_param_count(arch) == param_count(arch) - norms
    untied = load_architecture("llama-3.1-8b")
    embedding = untied.vocab_size * untied.hidden_size
    norms = (2 * untied.num_layers + 1) * untied.hidden_size
    assert matmul_param_count(untied) == param_count(untied) - embedding - norms


def test_matmul_params_exclude_qwen_biases() -> None:
    arch = load_architecture("qwen2.5-0.5b")
    h, d = arch.hidden_size, arch.head_dim
    biases = arch.num_layers * (arch.num_heads + 2 * arch.num_kv_heads) * d
    norms = (2 * arch.num_layers + 1) * h
    assert matmul_param_count(arch) == param_count(arch) - biases - norms


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_flops_per_token_is_twice_matmul_params_at_short_context(name: str) -> None:
    arch = load_architecture(name)
    assert flops_per_token(arch, 1) == pytest.approx(2 * matmul_param_count(arch), rel=1e-3)


def test_flops_per_token_at_context_one_is_matmuls_plus_one_attention_position() -> None:
    # tiny is too narrow for attention to be negligible, so check the formula exactly.
    arch = load_architecture("tiny")
    one_position = 4 * arch.num_layers * arch.num_heads * arch.head_dim
    assert flops_per_token(arch, 1) == 2 * matmul_param_count(arch) + one_position


def test_flops_per_token_grows_linearly_with_context() -> None:
    arch = load_architecture("llama-3.1-8b")
    slope = 4 * arch.num_layers * arch.num_heads * arch.head_dim
    assert flops_per_token(arch, 2) - flops_per_token(arch, 1) == slope
    assert flops_per_token(arch, 1001) - flops_per_token(arch, 1) == 1000 * slope
    assert flops_per_token(arch, 8192) == 2 * matmul_param_count(arch) + 8192 * slope


def test_flops_per_token_rejects_empty_context() -> None:
    with pytest.raises(ConfigError, match="context_tokens"):
        flops_per_token(load_architecture("tiny"), 0)


@pytest.mark.parametrize("batch_size", [2, 7, 64])
def test_prefill_flops_scale_with_batch(batch_size: int) -> None:
    arch = load_architecture("llama-3.1-8b")
    assert prefill_flops(arch, batch_size, 512) == batch_size * prefill_flops(arch, 1, 512)


def test_prefill_flops_sum_per_position_flops() -> None:
    """With logits everywhere, prefill is the sum over positions i of flops_per_token(i + 1)."""
    arch = load_architecture("qwen2.5-0.5b")
    n = 37
    expected = sum(flops_per_token(arch, i + 1) for i in range(n))
    assert prefill_flops(arch, 1, n, logits_for_all_tokens=True) == expected


def test_prefill_flops_count_the_lm_head_once_by_default() -> None:
    arch = load_architecture("llama-3.1-8b")
    n = 100
    head_flops = 2 * arch.vocab_size * arch.hidden_size
    all_logits = prefill_flops(arch, 1, n, logits_for_all_tokens=True)
    assert all_logits - prefill_flops(arch, 1, n) == (n - 1) * head_flops
    assert prefill_flops(arch, 1, 1) == flops_per_token(arch, 1)


def test_decode_flops_is_zero_for_one_output_token() -> None:
    """Prefill produces the first output token, so one output token needs no decode step."""
    assert decode_flops(load_architecture("llama-3.1-8b"), 8, 512, 1) == 0.0


def test_decode_flops_sum_steps_with_growing_context() -> None:
    arch = load_architecture("llama-3.2-1b")
    n_in, n_out = 50, 20
    expected = sum(flops_per_token(arch, n_in + j) for j in range(1, n_out))
    assert decode_flops(arch, 1, n_in, n_out) == expected
    assert decode_flops(arch, 3, n_in, n_out) == 3 * expected


@pytest.mark.parametrize(("batch_size", "input_tokens", "output_tokens"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_decode_flops_reject_non_positive_arguments(
    batch_size: int, input_tokens: int, output_tokens: int
) -> None:
    with pytest.raises(ConfigError):
        decode_flops(load_architecture("tiny"), batch_size, input_tokens, output_tokens)


def test_prefill_flops_reject_non_positive_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        prefill_flops(load_architecture("tiny"), 0, 8)
    with pytest.raises(ConfigError, match="input_tokens"):
        prefill_flops(load_architecture("tiny"), 1, 0)


def test_weight_bytes() -> None:
    arch = load_architecture("llama-3.1-8b")
    assert weight_bytes(arch) == 2 * 8_030_261_248
    assert weight_bytes(arch, bytes_per_param=4.0) == 4 * 8_030_261_248


def test_kv_cache_bytes() -> None:
    arch = load_architecture("llama-3.1-8b")
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token.
    assert kv_cache_bytes(arch, 1, 1) == 131072
    assert kv_cache_bytes(arch, 4, 1000) == 4 * 1000 * 131072
    assert kv_cache_bytes(arch, 1, 1, bytes_per_value=1.0) == 65536
    assert kv_cache_bytes(arch, 1, 0) == 0.0
    with pytest.raises(ConfigError, match="context_tokens"):
        kv_cache_bytes(arch, 1, -1)

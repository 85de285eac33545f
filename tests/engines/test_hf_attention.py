"""Grouped decode attention over the static cache (`hf_attention`): same numbers, no K/V head copies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_energy.architectures import build_model, load_architecture
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import StaticCache  # noqa: E402
from transformers.integrations import sdpa_attention  # noqa: E402

from llm_energy.engines.hf_attention import (  # noqa: E402
    GROUPED_SDPA,
    grouped_sdpa_attention_forward,
    set_decode_attention,
)

BATCH = Batch(batch_size=3, input_tokens=8, output_tokens=6)


class _Attention(torch.nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def _inputs(groups: int, q_len: int = 1, cache: int = 12, filled: int = 9) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(groups * 100 + q_len)
    b, kv, d = 3, 2, 8
    query = torch.randn(b, q_len, kv * groups, d, generator=gen).transpose(1, 2)  # a view, like the model's
    key = torch.randn(b, kv, cache, d, generator=gen)
    value = torch.randn(b, kv, cache, d, generator=gen)
    positions = torch.arange(cache)[None, None, None, :]
    rows = torch.arange(filled - q_len, filled)[None, None, :, None]
    mask = (positions <= rows).expand(b, 1, q_len, cache)  # causal over the filled slots, as sdpa_mask
    return query, key, value, mask


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_decode_equals_transformers_sdpa_for_bool_and_additive_masks(groups: int) -> None:
    module = _Attention(groups)
    query, key, value, mask = _inputs(groups)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    for m in (mask, additive):
        expected, _ = sdpa_attention.sdpa_attention_forward(module, query, key, value, m, scaling=0.3)
        got, weights = grouped_sdpa_attention_forward(module, query, key, value, m, scaling=0.3)
        assert weights is None
        assert got.shape == expected.shape == (3, 1, 2 * groups, 8)
        torch.testing.assert_close(got, expected)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple[int, ...]]]]:
    """Record every `repeat_kv` copy and the key shape of every SDPA call."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    repeat, sdpa = sdpa_attention.repeat_kv, torch.nn.functional.scaled_dot_product_attention

    def repeat_kv(x: Any, n: int) -> Any:
        if n > 1:
            seen.append(("repeat_kv", tuple(x.shape)))
        return repeat(x, n)

    def scaled_dot_product_attention(q: Any, k: Any, v: Any, **kw: Any) -> Any:
        seen.append(("sdpa", tuple(k.shape)))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(sdpa_attention, "repeat_kv", repeat_kv)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", scaled_dot_product_attention)
    yield seen


def test_prefill_and_calls_without_a_mask_go_to_transformers_unchanged(calls: list[Any]) -> None:
    module = _Attention(2)
    query, key, value, mask = _inputs(2, q_len=4)
    expected, _ = sdpa_attention.sdpa_attention_forward(module, query, key, value, mask)
    got, _ = grouped_sdpa_attention_forward(module, query, key, value, mask)
    torch.testing.assert_close(got, expected)
    assert [c[0] for c in calls] == ["repeat_kv", "repeat_kv", "sdpa"] * 2  # the same path both times
    calls.clear()
    query, key, value, _ = _inputs(2)
    got, _ = grouped_sdpa_attention_forward(module, query, key, value, None)
    assert [c[0] for c in calls] == ["sdpa"]  # no mask: transformers' native GQA (enable_gqa)


@pytest.mark.parametrize("grouped", [False, True])
def test_static_cache_decode_copies_kv_heads_only_without_the_fix(grouped: bool, calls: list[Any]) -> None:
    """transformers' sdpa repeats the whole static cache at every decode step; grouped_sdpa reads it as is."""
    arch = load_architecture("tiny")  # 4 query heads, 2 K/V heads, head_dim 16, 2 layers
    model = build_model(arch, device="cpu", dtype="float32")
    assert set_decode_attention(model, grouped) == (GROUPED_SDPA if grouped else "sdpa")
    cache_len = BATCH.input_tokens + BATCH.output_tokens
    cache = StaticCache(config=model.config, max_cache_len=cache_len)
    ids = torch.randint(0, arch.vocab_size, (BATCH.batch_size, BATCH.input_tokens))
    with torch.inference_mode():
        out = model(input_ids=ids, past_key_values=cache, cache_position=torch.arange(BATCH.input_tokens))
        calls.clear()
        step = torch.arange(BATCH.input_tokens, BATCH.input_tokens + 1)
        model(input_ids=out.logits[:, -1:].argmax(-1), past_key_values=cache, cache_position=step)
    cached = (BATCH.batch_size, 2, cache_len, 16)
    if grouped:
        assert calls == [("sdpa", cached)] * arch.num_layers
    else:
        repeated = (BATCH.batch_size, 4, cache_len, 16)
        assert calls == [("repeat_kv", cached), ("repeat_kv", cached), ("sdpa", repeated)] * arch.num_layers


def test_set_decode_attention_swaps_only_sdpa_and_back() -> None:
    model = build_model(load_architecture("tiny"), device="cpu", dtype="float32")
    assert set_decode_attention(model, False) == "sdpa"
    assert set_decode_attention(model, True) == GROUPED_SDPA
    assert set_decode_attention(model, True) == GROUPED_SDPA
    assert set_decode_attention(model, False) == "sdpa"
    model.set_attn_implementation("eager")
    assert set_decode_attention(model, True) == "eager"  # other implementations are left alone
    assert set_decode_attention(object(), True) is None


def _run(mode: str, model: Any = None, **options: Any) -> tuple[HFEngine, list[list[int]]]:
    config = HFEngineConfig(mode=mode, device="cpu", dtype="float32", **options)  # type: ignore[arg-type]
    engine = HFEngine(config, load_architecture("tiny"))
    engine.model = model
    engine.prepare(BATCH)
    engine.prefill()
    engine.decode()
    return engine, [t.tolist() for t in engine.output_ids]


@pytest.mark.slow
def test_compiled_mode_gives_the_same_tokens_with_and_without_the_grouped_attention() -> None:
    """Greedy tokens and exact lengths are unchanged by the fix; the facts name the attention used."""
    eager, expected = _run("eager")
    model = eager.model
    assert eager.describe()["attention"] == "sdpa"
    assert len(expected) == BATCH.output_tokens
    for grouped, name in ((True, GROUPED_SDPA), (False, "sdpa")):
        engine, tokens = _run("compiled", model, grouped_attention=grouped)
        assert tokens == expected
        assert engine.describe()["attention"] == name
        engine.decode()  # repeated decode rewinds the static cache
        assert [t.tolist() for t in engine.output_ids] == expected
        engine.model = None  # shared: keep it for the next engine
        engine.close()
    engine, _ = _run("compiled", model)
    assert model.config._attn_implementation == GROUPED_SDPA
    engine.model = None
    engine.close()
    again, tokens = _run("eager", model)  # an eager engine on the shared model goes back to sdpa
    assert tokens == expected and again.describe()["attention"] == "sdpa"
    again.close()
    eager.close()

"""Decoding strategies of the HF engine on the CPU with the tiny model: lengths, seeds, beam search."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines import build_engine
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import (
    DECODING_STRATEGIES,
    HFEngine,
    HFEngineConfig,
    beam_candidates,
    sample_tokens,
)
from llm_energy.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

BATCH = Batch(batch_size=3, input_tokens=8, output_tokens=6)


def _engine(mode: str = "eager", **options: Any) -> HFEngine:
    config = HFEngineConfig(mode=mode, device="cpu", dtype="float32", **options)  # type: ignore[arg-type]
    return HFEngine(config, load_architecture("tiny"))


def _tokens(batch: Batch = BATCH, mode: str = "eager", **options: Any) -> list[list[int]]:
    """Prepare, prefill and decode once; return the tokens as [step][request]."""
    engine = _engine(mode, **options)
    try:
        engine.load()
        engine.prepare(batch)
        engine.prefill()
        engine.decode()
        return [t.tolist() for t in engine.output_ids]
    finally:
        engine.close()


STRATEGY_OPTIONS: list[dict[str, Any]] = [
    {"decoding": "greedy"},
    {"decoding": "sample", "temperature": 0.7},
    {"decoding": "top-k", "top_k": 5},
    {"decoding": "top-p", "top_p": 0.5},
    {"decoding": "beam", "num_beams": 3},
]


@pytest.mark.parametrize("options", STRATEGY_OPTIONS, ids=lambda o: o["decoding"])
def test_every_strategy_yields_exactly_output_len_tokens_and_repeats(options: dict[str, Any]) -> None:
    """Each strategy returns L_out tokens per request; a second decode() replays the same tokens."""
    engine = _engine(**options)
    try:
        engine.load()
        engine.prepare(BATCH)
        engine.prefill()
        assert engine.decode() == BATCH.decode_tokens
        first = [t.tolist() for t in engine.output_ids]
        assert engine.generated_tokens() == BATCH.output_tokens
        assert all(tuple(t.shape) == (BATCH.batch_size,) for t in engine.output_ids)
        assert all(0 <= tok < 512 for step in first for tok in step)
        engine.decode()
        assert [t.tolist() for t in engine.output_ids] == first
        assert engine.generate() == BATCH.batch_size * BATCH.output_tokens
        assert [t.tolist() for t in engine.output_ids] == first
    finally:
        engine.close()


def test_strategies_cover_the_literal() -> None:
    assert set(DECODING_STRATEGIES) == {o["decoding"] for o in STRATEGY_OPTIONS}


def test_sampling_is_reproducible_for_a_seed_and_differs_from_greedy() -> None:
    """Same seed, same tokens (noise from a seeded generator); hot sampling is not greedy."""
    hot = {"decoding": "sample", "temperature": 100.0}
    assert _tokens(**hot) == _tokens(**hot)
    assert _tokens(**hot) != _tokens()
    assert _tokens(**hot, seed=1) != _tokens(**hot)


def test_top_k_one_and_a_tiny_top_p_are_greedy() -> None:
    """Keeping one token (top-k = 1, or a nucleus of mass 1e-6) leaves no choice: greedy's tokens."""
    greedy = _tokens()
    assert _tokens(decoding="top-k", top_k=1, temperature=5.0) == greedy
    assert _tokens(decoding="top-p", top_p=1e-6, temperature=5.0) == greedy


def test_top_k_above_the_vocabulary_samples_the_whole_vocabulary() -> None:
    assert _tokens(decoding="top-k", top_k=10_000) == _tokens(decoding="sample")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"decoding": "sample"}, [0.0321, 0.0871, 0.2369, 0.6439]),
        ({"decoding": "sample", "temperature": 2.0}, [0.1015, 0.1674, 0.2760, 0.4551]),
        ({"decoding": "top-k", "top_k": 2}, [0.0, 0.0, 0.2689, 0.7311]),
        ({"decoding": "top-p", "top_p": 0.5}, [0.0, 0.0, 0.0, 1.0]),
        ({"decoding": "top-p", "top_p": 0.7}, [0.0, 0.0, 0.2689, 0.7311]),
    ],
)
def test_gumbel_max_frequencies_follow_the_kept_softmax(
    options: dict[str, Any], expected: list[float]
) -> None:
    """argmax(logits/T + Gumbel) is distributed as softmax(logits/T) over the tokens kept."""
    rows = 200_000
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).expand(rows, 4)
    uniform = torch.rand((rows, 4), generator=torch.Generator().manual_seed(0))
    tokens = sample_tokens(logits, uniform, **options)
    freq = torch.bincount(tokens, minlength=4).double() / rows
    assert freq.tolist() == pytest.approx(expected, abs=0.005)


def test_beam_candidates_pick_the_best_extensions_over_all_beams() -> None:
    """Scores are beam score + log-softmax; the top ones over beams x vocab, best first."""
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    beam_scores = torch.tensor([[0.0, -0.5]])
    scores, parents, tokens = beam_candidates(logits, beam_scores, 2)
    logp = logits.log_softmax(-1)
    # Beam 0 + token 1 scores log p = -0.41; beam 1 + token 0 scores -0.5 - 0.10 = -0.60; the rest less.
    assert parents.tolist() == [[0, 1]] and tokens.tolist() == [[1, 0]]
    assert scores[0].tolist() == pytest.approx([logp[0, 1].item(), -0.5 + logp[1, 0].item()])


def test_beam_reports_computed_tokens_as_beams_times_returned() -> None:
    """Beam search computes every beam: decode_tokens_computed = beams x B x (L_out - 1)."""
    engine = _engine(decoding="beam", num_beams=4)
    try:
        engine.load()
        engine.prepare(BATCH)
        engine.prefill()
        returned = engine.decode()
        assert returned == BATCH.batch_size * (BATCH.output_tokens - 1)
        assert engine.decode_tokens_computed == 4 * returned
        assert engine.describe()["num_beams"] == 4
    finally:
        engine.close()
    greedy = _engine()
    greedy.prepare(BATCH)
    assert greedy.decode_tokens_computed == BATCH.decode_tokens
    greedy.close()


def _sequence_logprob(engine: HFEngine, tokens: list[list[int]]) -> list[float]:
    """Teacher-forced sum of log p(token | prompt, earlier tokens) of each request's output."""
    out = torch.tensor(tokens).T  # [B, L_out]
    ids = torch.cat([engine._input_ids, out], dim=1)
    with torch.no_grad():
        logp = engine.model(ids).logits.float().log_softmax(-1)
    n = engine._input_ids.shape[1]
    picked = logp[:, n - 1 : -1].gather(-1, out[:, :, None])[..., 0]
    return picked.sum(-1).tolist()


def test_beam_scores_equal_the_model_log_probability_of_the_returned_sequence() -> None:
    """The reordered KV cache is right: each beam's score is the teacher-forced log-prob of its tokens."""
    engine = _engine(decoding="beam", num_beams=3)
    try:
        engine.load()
        engine.prepare(Batch(2, 8, 7))
        engine.prefill()
        engine.decode()
        tokens = [t.tolist() for t in engine.output_ids]
        assert engine.sequence_logprobs.tolist() == pytest.approx(_sequence_logprob(engine, tokens), abs=1e-4)
    finally:
        engine.close()


def test_beam_over_the_whole_vocabulary_finds_the_best_two_token_sequence() -> None:
    """With num_beams = vocab, two-token beam search is exhaustive: it returns argmax over V x V."""
    engine = _engine(decoding="beam", num_beams=512)
    batch = Batch(2, 5, 2)
    try:
        engine.load()
        engine.prepare(batch)
        engine.prefill()
        engine.decode()
        first, second = (t.tolist() for t in engine.output_ids)
        with torch.no_grad():
            prompt = engine._input_ids
            logp1 = engine.model(prompt).logits[:, -1].float().log_softmax(-1)  # [B, V]
            rows = torch.cat([prompt.repeat_interleave(512, 0), torch.arange(512).repeat(2)[:, None]], 1)
            logp2 = engine.model(rows).logits[:, -1].float().log_softmax(-1).view(2, 512, 512)
        total = (logp1[:, :, None] + logp2).view(2, -1)
        best = total.argmax(-1)
        assert first == (best // 512).tolist() and second == (best % 512).tolist()
        assert engine.sequence_logprobs.tolist() == pytest.approx(total.max(-1).values.tolist(), abs=1e-4)
    finally:
        engine.close()


def test_beam_with_one_output_token_returns_greedys_first_token() -> None:
    """With L_out = 1 there is no decode step: the best beam is the argmax of the prefill logits."""
    batch = Batch(3, 8, 1)
    engine = _engine(decoding="beam", num_beams=3)
    try:
        engine.load()
        engine.prepare(batch)
        engine.prefill()
        assert engine._first_token.shape == (3, 3)
        engine.decode()
        assert [t.tolist() for t in engine.output_ids] == _tokens(batch)
        assert engine.decode_tokens_computed == 0
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"decoding": "nucleus"}, "decoding"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"temperature": -1.5}, "-1.5"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ({"top_p": 1.5}, "1.5"),
        ({"top_k": 0}, "top_k must be >= 1, got 0"),
        ({"num_beams": 1}, "num_beams must be >= 2"),
        ({"decoding": "beam", "num_beams": 513}, "num_beams = 513 exceeds"),
    ],
)
def test_invalid_decoding_values_are_config_errors_naming_the_value(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_engine("hf", load_architecture("tiny"), device="cpu", dtype="float32", **options)
    assert named in str(info.value)


def test_describe_records_the_strategy_settings() -> None:
    assert _engine().describe()["decoding"] == "greedy"
    facts = _engine(decoding="top-p", top_p=0.8, temperature=0.5).describe()
    assert (facts["decoding"], facts["top_p"], facts["temperature"]) == ("top-p", 0.8, 0.5)
    assert "top_k" not in facts and "num_beams" not in facts
    assert _engine(decoding="top-k", top_k=10_000).describe()["top_k"] == 512


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [{"decoding": "top-p", "top_p": 0.5}, {"decoding": "beam", "num_beams": 3}],
    ids=lambda o: o["decoding"],
)
def test_compiled_mode_gives_the_same_tokens_as_eager(options: dict[str, Any]) -> None:
    """torch.compile with a static cache changes no token for sampling (same noise) or beam search."""
    assert _tokens(mode="compiled", **options) == _tokens(**options)


@pytest.mark.parametrize("decoding", ["greedy", "top-p", "beam"])
def test_a_tiny_moe_model_decodes_to_exact_length(decoding: str) -> None:
    """The loop is architecture-agnostic: a random 8-expert OLMoE runs every kind of step."""
    from llm_energy.architectures import Architecture

    config = {
        "model_type": "olmoe",
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "vocab_size": 512,
        "max_position_embeddings": 256,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    arch = Architecture(name="tiny-olmoe", config=config, path=None)
    engine = HFEngine(HFEngineConfig(device="cpu", dtype="float32", decoding=decoding), arch)  # type: ignore[arg-type]
    try:
        engine.load()
        engine.prepare(BATCH)
        engine.prefill()
        engine.decode()
        assert engine.generated_tokens() == BATCH.output_tokens
        # Which experts kernel ran (transformers' grouped_mm or its per-expert loop) is part of the record.
        assert engine.describe()["experts_implementation"] in ("grouped_mm", "eager", "batched_mm")
    finally:
        engine.close()

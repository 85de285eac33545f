"""Decoding strategies in the HF engine's GPU modes, with the tiny model: run on the device."""

from __future__ import annotations

from typing import Any

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore::UserWarning")]

BATCH = Batch(4, 32, 12)
MODES = ("eager", "compiled", "cudagraphs")


def _run(mode: str, batch: Batch = BATCH, **options: Any) -> tuple[list[list[int]], list[float] | None, int]:
    """Return (tokens [step][request], beam scores or None, decode tokens computed); checks replay."""
    config = HFEngineConfig(mode=mode, device="cuda", dtype="float32", **options)  # type: ignore[arg-type]
    engine = HFEngine(config, load_architecture("tiny"))
    try:
        engine.load()
        engine.prepare(batch)
        engine.prefill()
        assert engine.decode() == batch.decode_tokens
        tokens = [t.tolist() for t in engine.output_ids]
        engine.decode()
        assert [t.tolist() for t in engine.output_ids] == tokens, "decode() must replay identically"
        scores = None if engine.sequence_logprobs is None else engine.sequence_logprobs.tolist()
        return tokens, scores, engine.decode_tokens_computed
    finally:
        engine.close()


@pytest.mark.parametrize(
    "options",
    [
        {"decoding": "sample", "temperature": 0.7},
        {"decoding": "top-k", "top_k": 5},
        {"decoding": "top-p", "top_p": 0.5},
    ],
    ids=lambda o: o["decoding"],
)
def test_sampling_gives_the_same_tokens_in_every_mode(options: dict[str, Any]) -> None:
    """The noise comes from one seeded generator outside the graph: eager, compiled and CUDA graphs agree."""
    eager, _, computed = _run("eager", **options)
    assert len(eager) == BATCH.output_tokens
    assert computed == BATCH.decode_tokens
    for mode in ("compiled", "cudagraphs"):
        assert _run(mode, **options)[0] == eager, mode


@pytest.mark.parametrize("mode", MODES)
def test_top_k_one_and_tiny_top_p_are_greedy_in_every_mode(mode: str) -> None:
    greedy = _run(mode)[0]
    assert _run(mode, decoding="top-k", top_k=1, temperature=5.0)[0] == greedy
    assert _run(mode, decoding="top-p", top_p=1e-6, temperature=5.0)[0] == greedy


@pytest.mark.parametrize("mode", MODES)
def test_hot_sampling_is_seeded_and_differs_from_greedy(mode: str) -> None:
    hot = {"decoding": "sample", "temperature": 100.0}
    first = _run(mode, **hot)[0]
    assert _run(mode, **hot)[0] == first
    assert first != _run(mode)[0]


def test_beam_search_gives_the_same_beams_in_every_mode() -> None:
    """Beam search (cache rows reordered in place for static caches) agrees across the three modes."""
    tokens, scores, computed = _run("eager", decoding="beam", num_beams=4)
    assert len(tokens) == BATCH.output_tokens
    assert computed == 4 * BATCH.decode_tokens
    assert scores is not None
    for mode in ("compiled", "cudagraphs"):
        other_tokens, other_scores, _ = _run(mode, decoding="beam", num_beams=4)
        assert other_tokens == tokens, mode
        assert other_scores == pytest.approx(scores, abs=1e-3), mode

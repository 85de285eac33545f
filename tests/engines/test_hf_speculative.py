"""Speculative decoding (`hf-spec`) on the CPU with the tiny target and a tiny draft (seed + 1)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines import build_engine
from llm_energy.engines.base import Batch
from llm_energy.engines.hf_speculative import HFSpeculativeEngine
from llm_energy.errors import ConfigError
from llm_energy.meters import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TINY = load_architecture("tiny")
BATCH = Batch(batch_size=3, input_tokens=8, output_tokens=12)


def _spec(**options: Any) -> HFSpeculativeEngine:
    engine = build_engine("hf-spec", TINY, device="cpu", dtype="float32", draft_model="tiny", **options)
    assert isinstance(engine, HFSpeculativeEngine)
    return engine


def _decode(engine: Any, batch: Batch = BATCH) -> list[list[int]]:
    try:
        engine.prepare(batch)
        engine.prefill()
        assert engine.decode() == batch.decode_tokens
        return [t.tolist() for t in engine.output_ids]
    finally:
        engine.close()


def test_constructed_pair_accepts_everything_and_the_random_pair_almost_nothing() -> None:
    agree = _spec(lookahead=3, spec_agree=True)
    tokens = _decode(agree)
    assert agree.stats.acceptance_rate == 1.0 == agree.stats.batch_acceptance_rate
    assert tokens == [[0, 0, 0]] * BATCH.output_tokens
    # 11 tokens after prefill at up to γ + 1 = 4 per round: 4 + 4 + 3 (the last round proposes 2).
    assert agree.stats.rounds == 3
    assert agree.stats.proposed == 3 * (3 + 3 + 2)

    random_pair = _spec(lookahead=3)
    _decode(random_pair)
    assert random_pair.stats.acceptance_rate < 0.1
    # Nothing accepted: one token per round, γ draft steps each (fewer near the end).
    assert random_pair.stats.rounds == BATCH.decode_steps


def test_output_is_exactly_the_targets_greedy_output_and_counts_add_up() -> None:
    expected = _decode(build_engine("hf", TINY, device="cpu", dtype="float32", decoding="greedy"))
    engine = _spec(lookahead=4)
    engine.load()
    # A draft that is the target itself (same weights) accepts everything and must change nothing.
    twin = _spec(lookahead=4)
    twin.model = twin.draft = engine.model
    assert _decode(twin) == expected
    assert twin.stats.acceptance_rate == 1.0
    assert _decode(engine) == expected  # the random draft: rejected proposals are rolled back
    s = engine.stats
    assert s.tokens_returned == BATCH.decode_tokens
    assert s.target_tokens_computed == BATCH.batch_size * s.rounds + s.proposed
    assert s.draft_steps == s.proposed // BATCH.batch_size


def test_repeated_decodes_are_identical_and_generate_gives_the_full_length() -> None:
    engine = _spec(lookahead=2)
    try:
        engine.prepare(BATCH)
        engine.prefill()
        engine.decode()
        first = [t.tolist() for t in engine.output_ids or []]
        stats = engine.stats
        engine.decode()
        assert [t.tolist() for t in engine.output_ids or []] == first
        assert engine.stats == stats
        assert engine.generate() == BATCH.batch_size * BATCH.output_tokens
        assert engine.generated_tokens() == BATCH.output_tokens
    finally:
        engine.close()


def test_component_bodies_run_and_leave_the_caches_at_the_prompt() -> None:
    engine = _spec(lookahead=3)
    try:
        engine.prepare_inputs(BATCH)
        engine.prefill()
        assert engine.draft_steps_only(5) == 5
        assert engine.verify_only(2) == 2
        assert engine._cache.get_seq_length() == BATCH.input_tokens
        assert engine._draft_cache.get_seq_length() == BATCH.input_tokens
    finally:
        engine.close()


def test_bad_input_is_refused_before_loading_weights() -> None:
    with pytest.raises(ConfigError, match="151936"):  # qwen2.5-0.5b's vocabulary vs tiny's 512
        build_engine("hf-spec", TINY, device="cpu", draft_model="qwen2.5-0.5b")
    with pytest.raises(ConfigError, match="lookahead.*got 0"):
        build_engine("hf-spec", TINY, device="cpu", draft_model="tiny", lookahead=0)
    with pytest.raises(ConfigError, match="lookahead"):
        make_point(
            model="tiny", engine="hf-spec", device="cpu", options={"draft_model": "tiny", "lookahead": 0}
        )
    # The default draft is Llama-3.2-1B, whose vocabulary is not tiny's.
    with pytest.raises(ConfigError, match="vocabulary"):
        build_engine("hf-spec", TINY, device="cpu")
    with pytest.raises(ConfigError, match="mode"):
        make_point(
            model="tiny", engine="hf-spec", mode="cudagraphs", device="cpu", options={"draft_model": "tiny"}
        )


def test_run_point_stores_the_measured_acceptance() -> None:
    clock = SimClock()
    meter = EnergyMeter([SimulatedGpu(clock, PowerTrace.constant(300.0))], clock=clock)
    point = make_point(
        model="tiny",
        engine="hf-spec",
        device="cpu",
        dtype="float32",
        batch_size=2,
        input_len=8,
        output_len=6,
        options={"draft_model": "tiny", "lookahead": 2, "spec_agree": True},
    )
    engine = build_engine("hf-spec", TINY, **{**point.options, "device": "cpu", "dtype": "float32"})

    def tick() -> float:
        clock.advance(0.05)  # every clock read moves the simulated time on, so windows close
        return clock()

    [result] = run_point(engine, meter, point, env={}, options=RunOptions(target_window_s=1.0), clock=tick)
    engine.close()
    assert result.status == "ok"
    facts = result.config["engine_facts"]
    assert facts["speculative"]["acceptance_rate"] == 1.0
    assert facts["lookahead"] == 2 and facts["advance"] == "batch-min"

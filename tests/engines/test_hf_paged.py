"""The continuous-batching engine on the CPU with the tiny model: exact lengths, eager's tokens, runner."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines import build_engine, check_mode
from llm_energy.engines.base import Batch, Engine
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.engines.hf_paged import HFPagedEngine, HFPagedEngineConfig, paged_cache_size
from llm_energy.errors import EngineError
from llm_energy.meters import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

pytest.importorskip("torch")
pytest.importorskip("transformers")
# transformers sizes the paged cache from psutil's memory figures on a CPU (0 bytes free without it).
pytest.importorskip("psutil")

BATCH = Batch(batch_size=4, input_tokens=32, output_tokens=8)
CPU = {"device": "cpu", "dtype": "float32"}


def _engine() -> HFPagedEngine:
    # Small blocks keep the CPU cache (and the packed attention mask sized from it) tiny.
    return HFPagedEngine(HFPagedEngineConfig(block_size=16, **CPU), load_architecture("tiny"))


@pytest.fixture(scope="module")
def prepared() -> Iterator[HFPagedEngine]:
    """One engine prepared for BATCH, shared: loading and starting the scheduler once keeps this fast."""
    engine = _engine()
    engine.load()
    engine.prepare(BATCH)
    yield engine
    engine.close()


def test_registered_as_hf_paged_with_mode_paged() -> None:
    """The registry builds the engine by name; its only mode is `paged`; it meets the Engine protocol."""
    engine = build_engine("hf-paged", load_architecture("tiny"), **CPU, mode=None)
    assert isinstance(engine, HFPagedEngine)
    assert isinstance(engine, Engine)
    assert check_mode("hf-paged", None) == "paged"
    assert HFPagedEngine.separate_decode is False


def test_generate_gives_exactly_output_tokens_per_request(prepared: HFPagedEngine) -> None:
    """generate() returns B x L_out, and every request got exactly L_out new ids below the vocabulary."""
    vocab = load_architecture("tiny").vocab_size
    assert prepared.generate() == BATCH.batch_size * BATCH.output_tokens
    assert prepared.output_ids is not None
    assert [len(t) for t in prepared.output_ids] == [BATCH.output_tokens] * BATCH.batch_size
    assert prepared.generated_tokens() == BATCH.output_tokens
    assert all(0 <= tok < vocab for t in prepared.output_ids for tok in t)
    assert prepared.prompt_ids is not None
    assert [len(p) for p in prepared.prompt_ids] == [BATCH.input_tokens] * BATCH.batch_size


def test_greedy_tokens_equal_those_of_the_eager_hf_engine(prepared: HFPagedEngine) -> None:
    """Same weights and the same prompts: paged attention picks the same greedy tokens as eager HF."""
    eager = HFEngine(HFEngineConfig(mode="eager", **CPU), load_architecture("tiny"))
    try:
        eager.load()
        eager.prepare(BATCH)
        eager.prefill()
        eager.decode()
        # HFEngine draws its prompts as [B, L_in] from the same seeded generator.
        assert prepared.prompt_ids == eager._input_ids.tolist()
        expected = [list(col) for col in zip(*(t.tolist() for t in eager.output_ids), strict=True)]
    finally:
        eager.close()
    prepared.generate()
    assert prepared.output_ids == expected


def test_prefill_yields_one_token_per_request_the_first_of_generate(prepared: HFPagedEngine) -> None:
    """prefill() is a generation of one token: it equals the first token of the whole generation."""
    prepared.generate()
    assert prepared.output_ids is not None
    first = [t[0] for t in prepared.output_ids]
    prepared.prefill()
    assert prepared.output_ids == [[tok] for tok in first]


def test_decode_raises_engine_error(prepared: HFPagedEngine) -> None:
    """Decode cannot run on its own: the error says the runner derives it."""
    with pytest.raises(EngineError, match="derives decode"):
        prepared.decode()


def test_phases_before_prepare_raise_engine_error() -> None:
    """A phase before prepare() is an EngineError, not a failure inside transformers."""
    engine = _engine()
    with pytest.raises(EngineError, match="prepare"):
        engine.prefill()
    with pytest.raises(EngineError, match="prepare"):
        engine.generate()


def test_describe_names_versions_attention_and_cache(prepared: HFPagedEngine) -> None:
    """The run record gets versions, the attention kernel and the paged-cache sizes in use."""
    import torch
    import transformers

    facts = prepared.describe()
    assert facts["engine"] == "hf-paged" and facts["mode"] == "paged"
    assert facts["torch"] == torch.__version__
    assert facts["transformers"] == transformers.__version__
    assert facts["attn_implementation"] == "paged|sdpa"
    assert facts["block_size"] == 16
    assert (facts["num_blocks"], facts["max_batch_tokens"]) == paged_cache_size(BATCH, prepared.config)
    assert facts["prefix_sharing"] is False
    assert facts["use_cuda_graph"] == [False, False]


def test_cache_is_sized_from_the_batch_unless_configured() -> None:
    """Default: every request's full sequence fits at once (+1 block each); set values are kept."""
    cfg = HFPagedEngineConfig(block_size=16)
    # ceil((32 + 8) / 16) + 1 = 4 blocks per request; the whole 128-token prefill fits in one step.
    assert paged_cache_size(BATCH, cfg) == (16, 128)
    big = Batch(batch_size=64, input_tokens=1024, output_tokens=128)
    assert paged_cache_size(big, HFPagedEngineConfig()) == (64 * 6, 8192)
    fixed = HFPagedEngineConfig(num_blocks=100, max_batch_tokens=512)
    assert paged_cache_size(big, fixed) == (100, 512)


def test_run_point_derives_decode_from_total_minus_prefill() -> None:
    """Through the runner: measured prefill and total windows, decode derived and flagged as such."""
    clock = SimClock()
    gpu = SimulatedGpu(clock, PowerTrace.constant(300.0), update_period_s=0.01)
    # The simulated device follows real time, so windows span the engine's real run time.
    t_origin = time.monotonic()
    gpu.clock = lambda: time.monotonic() - t_origin  # type: ignore[assignment]
    point = make_point(
        model="tiny",
        engine="hf-paged",
        batch_size=BATCH.batch_size,
        input_len=BATCH.input_tokens,
        output_len=BATCH.output_tokens,
        dtype="float32",
        device="cpu",
    )
    engine = _engine()
    engine.load()
    meter = EnergyMeter([gpu], clock=gpu.clock, min_window_periods=1)
    try:
        (result,) = run_point(
            engine, meter, point, env={}, options=RunOptions(target_window_s=0.1), clock=gpu.clock
        )
    finally:
        meter.close()
        engine.close()
    assert result.status == "ok", result.error
    assert set(result.phases) == {"prefill", "decode", "total"}
    prefill, decode, total = (result.phases[p] for p in ("prefill", "decode", "total"))
    assert "derived:total-minus-prefill" in decode.measurement.flags
    assert "derived:total-minus-prefill" not in prefill.measurement.flags
    assert decode.tokens == BATCH.batch_size * (BATCH.output_tokens - 1)
    assert total.tokens == BATCH.batch_size * BATCH.output_tokens
    per_rep_j = {p.phase: p.measurement.energy_j["gpu:0"] / p.repetitions for p in (prefill, total)}
    assert decode.measurement.energy_j["gpu:0"] == pytest.approx(per_rep_j["total"] - per_rep_j["prefill"])
    # Seven more forward steps per generation than prefill's one: decode costs energy.
    assert decode.measurement.energy_j["gpu:0"] > 0.0


def test_flash_attention_without_its_package_is_an_engine_error_at_load() -> None:
    """A flash kernel whose package is missing fails in load() with a clear message, not mid-generation."""
    import importlib.util

    if importlib.util.find_spec("flash_attn") or importlib.util.find_spec("kernels"):
        pytest.skip("a flash-attention package is installed here")
    engine = HFPagedEngine(
        HFPagedEngineConfig(attn_implementation="paged|flash_attention_2", **CPU), load_architecture("tiny")
    )
    with pytest.raises(EngineError, match="flash_attn"):
        engine.load()

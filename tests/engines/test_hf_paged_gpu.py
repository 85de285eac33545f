"""The continuous-batching engine on a real GPU with the tiny model: run on the device."""

from __future__ import annotations

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.engines.hf_paged import HFPagedEngine, HFPagedEngineConfig
from llm_energy.meters import EnergyMeter
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_paged_engine_measures_exact_lengths_on_the_gpu():
    """B=8, 64 in / 16 out on CUDA: ok (the engine checks lengths), measured phases, decode derived > 0."""
    from llm_energy.meters.zeus import ZeusGpu

    point = make_point(
        model="tiny",
        engine="hf-paged",
        batch_size=8,
        input_len=64,
        output_len=16,
        dtype="float32",
        device="cuda",
    )
    engine = HFPagedEngine(
        HFPagedEngineConfig(device="cuda", dtype="float32", block_size=32), load_architecture("tiny")
    )
    engine.load()
    with EnergyMeter([ZeusGpu(0)], sync=engine.synchronize) as meter:
        (result,) = run_point(engine, meter, point, env={}, options=RunOptions(target_window_s=1.5))
    engine.close()
    assert result.status == "ok", result.error
    for name in ("prefill", "total"):
        assert result.phases[name].measurement.source["gpu:0"] == "measured"
        assert result.phases[name].energy_j > 0
    assert result.phases["decode"].energy_j > 0

"""The vLLM engine on a real GPU (run on the device with the vllm-offline bundle; skipped elsewhere)."""

from __future__ import annotations

import importlib.util

import pytest

from llm_energy.architectures import load_architecture
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def engine():
    from llm_energy.engines.vllm import VllmEngine, VllmEngineConfig

    eng = VllmEngine(
        VllmEngineConfig(mode="eager", max_num_seqs=8, max_model_len=512, gpu_memory_utilization=0.3),
        load_architecture("qwen2.5-0.5b"),
    )
    eng.load()
    yield eng
    eng.close()


def test_exact_lengths_and_measured_phases_on_the_gpu(engine):
    """B=4, 64 in / 16 out: ok (engine checks exact lengths), measured phases, positive derived decode."""
    from llm_energy.meters import EnergyMeter
    from llm_energy.meters.zeus import ZeusGpu

    point = make_point(
        model="qwen2.5-0.5b",
        engine="vllm",
        mode="eager",
        batch_size=4,
        input_len=64,
        output_len=16,
        device="cuda",
        options={"max_num_seqs": 8, "max_model_len": 512},
    )
    with EnergyMeter([ZeusGpu(0)], sync=engine.synchronize) as meter:
        (result,) = run_point(engine, meter, point, env={}, options=RunOptions(target_window_s=1.5))
    assert result.status == "ok", result.error
    assert result.phases["total"].measurement.source["gpu:0"] == "measured"
    decode = result.phases["decode"]
    assert "derived:total-minus-prefill" in decode.measurement.flags
    assert decode.energy_j > 0

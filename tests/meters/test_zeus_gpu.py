"""The production GPU path (Zeus → NVML) on a real GPU: run on the device, skipped elsewhere."""

from __future__ import annotations

import time

import pytest

from llm_energy.errors import CounterUnavailable
from llm_energy.meters import EnergyMeter, measure_update_period_s

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def gpu():
    from llm_energy.meters.zeus import ZeusGpu

    return ZeusGpu(0)


def _gemm_load(seconds: float) -> None:
    import torch

    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _ = x @ x
    torch.cuda.synchronize()


def test_counter_and_power_are_sane(gpu):
    """The counter is monotonic and power lies between 0 and 1.2× the power limit."""
    info = gpu.info()
    e0 = gpu.total_energy_mj()
    _gemm_load(1.0)
    e1 = gpu.total_energy_mj()
    assert e1 > e0
    power_w = gpu.power_mw() / 1e3
    assert 0 < power_w <= 1.2 * info["power_limit_w"]
    assert info["name"] and info["driver"]


def test_update_period_is_about_100ms(gpu):
    """The NVML counter refreshes every few tens to hundreds of ms (≈100 ms on the H100)."""
    import threading

    t = threading.Thread(target=_gemm_load, args=(2.0,))
    t.start()
    period_s = measure_update_period_s(gpu, max_wait_s=1.5)
    t.join()
    assert period_s is not None
    assert 0.005 <= period_s <= 0.5


def test_counter_and_sampled_power_agree_under_load(gpu):
    """A 4 s window over a GEMM load: counter and sampled-power energy agree within their bounds."""
    import torch

    class Counterless:
        index = 0
        update_period_s = gpu.update_period_s

        def total_energy_mj(self) -> int:
            raise CounterUnavailable("hidden")

        def power_mw(self) -> int:
            return gpu.power_mw()

        def info(self) -> dict:
            return gpu.info()

    counter = EnergyMeter([gpu], sync=torch.cuda.synchronize)
    sampled = EnergyMeter([Counterless()], sync=torch.cuda.synchronize)
    try:
        counter.begin_window("w")
        sampled.begin_window("w")
        _gemm_load(4.0)
        s = sampled.end_window("w")
        c = counter.end_window("w")
    finally:
        counter.close()
        sampled.close()
    diff = abs(c.energy_j["gpu:0"] - s.energy_j["gpu:0"])
    assert diff <= c.uncertainty_j["gpu:0"] + s.uncertainty_j["gpu:0"]
    assert c.energy_j["gpu:0"] / c.duration_s > 150  # a GEMM load draws well above idle

"""Frontend-lag detection and the client-token vs GPU-work windows: pure functions, then a busy stub."""

from __future__ import annotations

import time

import pytest

from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.records import Request
from llm_energy.serving.lag import (
    MonitorSample,
    client_token_window,
    compare_windows,
    detect_frontend_lag,
    gpu_work_window,
)
from llm_energy.serving.records import RequestRecord
from llm_energy.serving.replay_run import replay_servers
from llm_energy.serving.servers import ServerGroup
from llm_energy.serving.servers.stub import stub_server


def _record(index: int, token_times: list[float]) -> RequestRecord:
    return RequestRecord(
        index=index,
        scheduled_s=0.0,
        sent_s=0.0,
        first_token_s=token_times[0],
        done_s=token_times[-1],
        token_times_s=tuple(token_times),
        input_tokens=10,
        output_tokens_requested=len(token_times),
        output_tokens_received=len(token_times),
        success=True,
    )


def _lagging_run() -> tuple[list[MonitorSample], list[RequestRecord], list[tuple[float, float, float]]]:
    """GPU at 400 W for 0-4 s then idle (70 W) to 10 s; the frontend at 100% throughout; tokens 0.1-10 s."""
    samples = [MonitorSample(t / 10, (100.0,), (400.0 if t / 10 < 4 else 70.0,)) for t in range(0, 101)]
    records = [_record(i, [0.1 * k + 0.01 * i for k in range(1, 100)]) for i in range(4)]
    intervals = [(t / 2, t / 2 + 0.5, (400.0 if t / 2 < 4 else 70.0) * 0.5) for t in range(20)]
    return samples, records, intervals


def test_lag_is_flagged_when_the_cpu_is_busy_the_gpu_idle_and_tokens_still_arrive():
    samples, records, intervals = _lagging_run()
    lag = detect_frontend_lag(samples, records, idle_power_w=70.0)
    assert lag.flagged and lag.lag_s == pytest.approx(6.0, abs=0.2)
    assert lag.tokens_after_gpu_window == pytest.approx(0.6, abs=0.03)
    assert gpu_work_window(samples, 70.0) == pytest.approx((-0.1, 3.9), abs=1e-9)
    windows = compare_windows(records, intervals, samples, 70.0)
    assert windows.gpu is not None
    # GPU window: 4 s at 400 W for all 396 tokens; client window (10%-90% of tokens): mostly idle power.
    assert windows.gpu.energy_j == pytest.approx(400 * 3.9 + 0, rel=0.05)
    assert windows.gpu.output_tokens == 396
    assert windows.client.energy_per_output_token_j > 1.2 * windows.gpu.energy_per_output_token_j
    start, end = client_token_window(records)
    assert 0.9 < start < 1.2 and 8.8 < end < 9.1


def test_no_lag_when_the_gpu_works_until_the_last_token_or_the_cpu_is_idle():
    samples, records, _ = _lagging_run()
    busy_gpu = [MonitorSample(s.t_s, s.cpu_pct, (400.0,)) for s in samples[:-5]] + samples[-5:]
    assert not detect_frontend_lag(busy_gpu, records, 70.0).flagged
    quiet_cpu = [MonitorSample(s.t_s, (20.0,), s.power_w) for s in samples]
    lag = detect_frontend_lag(quiet_cpu, records, 70.0)
    assert not lag.flagged and lag.lag_s == 0 and "no frontend lag" in lag.reason
    flat = [MonitorSample(s.t_s, s.cpu_pct, (70.0,)) for s in samples]
    assert not detect_frontend_lag(flat, records, 70.0).flagged


def _gpu_on_real_clock(trace: PowerTrace) -> SimulatedGpu:
    gpu = SimulatedGpu(SimClock(), trace, update_period_s=0.05)
    gpu.clock = time.perf_counter  # type: ignore[assignment]
    return gpu


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("busy", [True, False])
def test_busy_stub_streaming_after_the_simulated_gpu_went_idle_is_flagged(busy):
    """A stub that spins a core keeps streaming after the simulated GPU dropped to idle: flagged.

    The same run against a stub that sleeps between tokens (CPU near 0%) is not.
    """
    trace = PowerTrace(initial_w=70.0)
    gpu = _gpu_on_real_clock(trace)
    requests = [Request(8, 60, 0.05 * i) for i in range(40)]  # 2 s of sends, ~1.2 s of streaming each
    with ServerGroup([stub_server(token_delay_s=0.02, busy=busy)]) as servers:
        start = time.perf_counter()
        trace.set(start, 400.0)  # the "GPU" works for the first 1.5 s of the run, then idles
        trace.set(start + 1.5, 70.0)
        run = replay_servers(servers, requests, gpus=[gpu], idle_s=0, warmup_requests=0, window_period_s=0.25)
    assert all(r.success for r in run.records)
    assert run.lag is not None and run.windows is not None and run.windows.gpu is not None
    assert run.windows.gpu.end_s == pytest.approx(start + 1.5, abs=0.3)
    if busy:
        assert run.lag.cpu_peak_pct > 50
        lag = detect_frontend_lag(
            run.samples, run.records, None, cpu_busy_pct=min(90.0, run.lag.cpu_peak_pct - 10)
        )
        assert lag.flagged and lag.lag_s > 0.5
        assert run.windows.client.energy_per_output_token_j > run.windows.gpu.energy_per_output_token_j
    else:
        assert not run.lag.flagged and run.lag.cpu_peak_pct < 50

"""`llm-energy replay` against the stub server on 127.0.0.1, and its energy windows on a simulated GPU."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.meters import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.serving import StubConfig, StubServer
from llm_energy.serving.lag import interval_energy_j
from llm_energy.serving.replay_run import WindowRecorder


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_replay_reports_latency_slo_and_writes_records(tmp_path):
    """60 Azure-code requests replayed 20× faster: all succeed, SLO attainment printed, one CSV row each."""
    with StubServer(StubConfig(token_delay_s=0.002)) as stub:
        out = tmp_path / "records.csv"
        result = CliRunner().invoke(
            app,
            [
                "replay",
                "--url",
                stub.url,
                "--trace",
                "azure-code",
                "--num-requests",
                "60",
                "--time-scale",
                "20",
                "--slo",
                "ttft=2s",
                "--records",
                str(out),
                "--idle-s",
                "0",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "60 sent, 60 ok" in result.output and "attained" in result.output
    rows = pd.read_csv(out)
    assert len(rows) == 60 and rows["success"].all()
    assert (rows["output_tokens_received"] == rows["output_tokens_requested"]).all()


def test_replay_bad_input_exits_2():
    """A malformed SLO or window, or an unreachable URL, is one clear error with exit 2."""
    runner = CliRunner()
    assert runner.invoke(app, ["replay", "--url", "http://127.0.0.1:9", "--slo", "ttft=fast"]).exit_code == 2
    assert runner.invoke(app, ["replay", "--url", "http://127.0.0.1:9", "--window", "soon"]).exit_code == 2
    unreachable = runner.invoke(
        app, ["replay", "--url", "http://127.0.0.1:9", "--num-requests", "3", "--idle-s", "0"]
    )
    assert unreachable.exit_code == 2


def test_window_recorder_measures_consecutive_windows_on_a_real_clock():
    """Consecutive windows over a constant 300 W: their energies add up to 300 W × the time covered."""
    clock = SimClock()
    gpu = SimulatedGpu(clock, PowerTrace.constant(300.0), update_period_s=0.01)
    t0 = time.perf_counter()
    gpu.clock = lambda: time.perf_counter() - t0  # type: ignore[assignment]
    meter = EnergyMeter([gpu], clock=time.perf_counter, min_window_periods=1)
    with WindowRecorder(meter, period_s=0.1) as rec:
        time.sleep(0.45)
    covered = rec.windows[-1][1] - rec.windows[0][0]
    assert len(rec.windows) >= 4
    assert sum(e for _, _, e in rec.windows) == pytest.approx(300.0 * covered, rel=0.15)
    assert interval_energy_j([(0.0, 1.0, 100.0), (1.0, 2.0, 50.0)], 0.5, 1.5) == pytest.approx(75.0)

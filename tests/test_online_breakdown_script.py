"""benchmarks/online_breakdown.py on the H100 online run in docs/results (online-h100.md's figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "docs" / "results" / "2026-11-23-h100-online-vllm" / "online"


@pytest.mark.skipif(not RUN.exists(), reason="the raw online run is not in this checkout")
def test_the_1x_gap_survives_subtracting_idle_and_runs_at_small_batch(
    benchmark_script, tmp_path: Path
) -> None:
    module = benchmark_script("online_breakdown")
    assert module.main([str(RUN), "--json", str(tmp_path / "b.json")]) == 0
    rows = {r["time_scale"]: r for r in json.loads((tmp_path / "b.json").read_text())}
    one = rows[1.0]
    assert one["ratio_total"] == pytest.approx(3.79, abs=0.01)
    assert one["ratio_dynamic"] == pytest.approx(3.29, abs=0.01)
    assert one["in_flight_median"] == 3 and one["time_share_none_in_flight"] == pytest.approx(0.15, abs=0.01)
    assert one["monitor_median_power_w"] == pytest.approx(457, abs=1)
    assert sum(b["time_share"] for b in one["buckets"]) == pytest.approx(1.0)
    assert rows[4.0]["ratio_dynamic"] < rows[2.0]["ratio_dynamic"] < one["ratio_dynamic"]

"""benchmarks/online_breakdown.py on the online runs in docs/results (online-h100.md, online-h200.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"

# run folder: (1x total ratio, 1x dynamic ratio, 1x time with none in flight, 1x median GPU power W)
RUNS = {
    "2026-11-23-h100-online-vllm": (3.79, 3.29, 0.15, 457),
    "2026-12-02-h200-online-vllm": (4.20, 3.61, 0.19, 468),
}


@pytest.mark.parametrize("folder", sorted(RUNS))
def test_the_1x_gap_survives_subtracting_idle_and_runs_at_small_batch(
    benchmark_script, tmp_path: Path, folder: str
) -> None:
    run = RESULTS / folder / "online"
    if not run.exists():
        pytest.skip("the raw online run is not in this checkout")
    total, dynamic, none_share, power_w = RUNS[folder]
    module = benchmark_script("online_breakdown")
    assert module.main([str(run), "--json", str(tmp_path / "b.json")]) == 0
    rows = {r["time_scale"]: r for r in json.loads((tmp_path / "b.json").read_text())}
    one = rows[1.0]
    assert one["ratio_total"] == pytest.approx(total, abs=0.01)
    assert one["ratio_dynamic"] == pytest.approx(dynamic, abs=0.01)
    assert one["in_flight_median"] == 3 and one["time_share_none_in_flight"] == pytest.approx(
        none_share, abs=0.01
    )
    assert one["monitor_median_power_w"] == pytest.approx(power_w, abs=1)
    assert sum(b["time_share"] for b in one["buckets"]) == pytest.approx(1.0)
    assert rows[4.0]["ratio_dynamic"] < rows[2.0]["ratio_dynamic"] < one["ratio_dynamic"]

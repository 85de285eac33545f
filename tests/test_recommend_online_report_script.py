"""benchmarks/recommend_online_report.py: the common span, SLO-missing rows, replicated configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _row(
    name: str, mode: str, seqs: int, metered_s: float, power_w: float, slo_pct: float
) -> dict[str, object]:
    return {
        "name": name, "mode": mode, "max_num_seqs": seqs, "requests": 100, "metered_s": metered_s,
        "energy_j": power_w * metered_s, "idle_power_w": 100.0, "steady_j_per_request": 1.0,
        "ttft_p90_s": 0.1, "tpot_p90_s": 0.01, "slo_attainment_pct": slo_pct, "decoding_mean": 1.0,
        "decoding_p90": 2.0, "mean_power_w": power_w,
    }  # fmt: skip


def test_the_common_span_is_the_longest_among_those_meeting_the_slo(benchmark_script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its sibling simulator_vs_online
    module = benchmark_script("recommend_online_report")
    rows = [
        _row("slow", "eager", 256, 40.0, 300.0, 100.0),  # 12,000 J over the span
        _row("fast", "cudagraphs", 128, 30.0, 500.0, 100.0),  # 15,000 J + 10 s idle at 100 W
        _row("fast-again", "cudagraphs", 128, 30.0, 520.0, 100.0),
        _row("queued", "eager", 64, 90.0, 200.0, 40.0),  # misses the SLO: its 90 s must not set the span
    ]
    text = module.table(rows, None)
    assert text.startswith("common span: 40.0 s")
    assert [r["common_span_j"] for r in rows] == pytest.approx([12_000.0, 16_000.0, 16_600.0, 18_000.0])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 1.000× |" in lines["slow"] and "| 1.333× |" in lines["fast"]
    assert "1.500× (misses SLO)" in lines["queued"]
    assert "cudagraphs 128: n = 2, median 163.00, min–max 160.00–166.00 J/request" in text
    assert "eager 256: n =" not in text  # replayed once: no spread line

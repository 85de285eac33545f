"""benchmarks/online_gpu.py on CPU: the stub (fast) and transformers serve on the tiny model (slow)."""

from __future__ import annotations

import json
import math

import pytest

from llm_energy.store import Store
from llm_energy.store.serving import read_serving_runs


@pytest.mark.parametrize("server", ["stub", pytest.param("transformers", marks=pytest.mark.slow)])
def test_smoke_run_writes_json_and_stores_each_rate(benchmark_script, tmp_path, server):
    result = benchmark_script("online_gpu").main(
        [str(tmp_path), "--smoke", "--server", server, "--scales", "8,16", "--window-s", "2"]
    )
    assert "error" not in result, result.get("error")
    written = json.loads((tmp_path / "online_gpu.json").read_text())
    assert [r["time_scale"] for r in written["rates"]] == [8.0, 16.0]
    for row in written["rates"]:
        assert row["ok"] == row["requests"] == row["requests_scheduled"] > 0
        assert row["slo_attainment_pct"] is not None and row["ttft_p90_s"] > 0
    # twice the rate over the same wall window: about twice the requests
    assert written["rates"][1]["requests"] > 1.4 * written["rates"][0]["requests"]
    with Store(tmp_path / "serving.db") as store:
        assert len(read_serving_runs(store)) == 2
    assert (tmp_path / "online_gpu.log").exists()


@pytest.mark.filterwarnings("ignore::llm_energy.errors.MeasurementWarning")  # a 0.15 s simulated run
def test_offline_runs_each_rates_requests_on_one_engine_and_compares(benchmark_script, tmp_path, capsys):
    result = benchmark_script("online_gpu").main(
        [str(tmp_path), "--smoke", "--server", "stub", "--offline", "--scales", "8,16"]
    )
    assert "error" not in result and "offline_error" not in result, result
    written = json.loads((tmp_path / "online_gpu.json").read_text())
    assert written["offline_skipped"] == [] and written["offline_load_s"] >= 0
    assert capsys.readouterr().out.count("loading tiny") == 1  # one engine load for both rates
    for row in written["rates"]:
        cmp = row["offline"]
        off, on = cmp["offline"], cmp["online"]
        assert off["kind"] == "measured" and "simulated" in off["label"] and "continuous" in off["label"]
        assert math.isfinite(off["mean_j"]) and off["mean_j"] > 0 and on["mean_j"] > 0
        assert off["requests"] == on["requests"] == row["ok"] == row["requests"] > 0
        assert off["output_tokens"] == on["output_tokens"]
        assert cmp["run_id"] == row["run_id"] and cmp["batch_size"] == 256
        assert cmp["ratio"] == pytest.approx(on["total_j"] / off["total_j"])
        assert row["offline_wall_s"] >= 0
        assert (tmp_path / f"offline-s{row['time_scale']:g}.json").exists()


def test_offline_past_the_deadline_keeps_the_online_rows_and_lists_the_skipped_rates(
    benchmark_script, tmp_path
):
    result = benchmark_script("online_gpu").main(
        [str(tmp_path), "--smoke", "--server", "stub", "--offline", "--deadline-s", "0"]
    )
    assert "error" not in result and "offline_error" not in result, result
    assert [s["time_scale"] for s in result["offline_skipped"]] == [8.0]
    assert "deadline" in result["offline_skipped"][0]["reason"]
    assert "offline" not in result["rates"][0] and result["rates"][0]["ok"] > 0
    assert not list(tmp_path.glob("offline-s*.json"))


def test_offline_with_transformers_serve_is_an_argparse_error(benchmark_script, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark_script("online_gpu").main([str(tmp_path), "--server", "transformers", "--offline"])
    assert exc.value.code == 2
    assert "--offline needs --server vllm or stub" in capsys.readouterr().err

"""The TP GPU script on the CPU: tiny model, TP 1 and 2 over gloo, replicas vs TP; and its refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")


def test_smoke_measures_tp1_tp2_and_compares_replicas(benchmark_script, tmp_path: Path) -> None:
    assert benchmark_script("tp_gpu").main([str(tmp_path), "--smoke"]) == 0
    summary = json.loads((tmp_path / "tp_gpu.json").read_text())
    assert (tmp_path / "tp_gpu.log").stat().st_size > 0
    assert summary["points"] == {"1": [1, 2], "2": [1, 2]}
    groups = {g["tp_size"]: g for g in summary["groups"]}
    assert set(groups) == {1, 2} and not any("error" in g for g in groups.values())
    for group in groups.values():
        assert [r["batch"] for r in group["rows"]] == [1, 2]
        assert all(r["status"] == "ok" and r["total_energy_j"] > 0 for r in group["rows"]), group
        assert group["lockstep_sync_s"] > 0
    (row_1, row_2) = summary["comparisons"]["tp2_vs_2x_tp1"]
    assert "missing" in row_1  # batch 1 cannot split over 2 replicas
    assert row_2["total_batch"] == 2 and row_2["energy_ratio_tp_over_replicas"] > 0

    # A second command on the same OUT measures nothing again and still compares from the store.
    assert benchmark_script("tp_gpu").main([str(tmp_path), "--smoke", "--tp-sizes", "2"]) == 0
    again = json.loads((tmp_path / "tp_gpu.json").read_text())
    assert [(g["tp_size"], g["rows"], g["already_stored"]) for g in again["groups"]] == [
        (1, [], [1]),
        (2, [], [1, 2]),
    ]
    assert again["comparisons"]["tp2_vs_2x_tp1"][1]["energy_ratio_tp_over_replicas"] == pytest.approx(
        row_2["energy_ratio_tp_over_replicas"]
    )


def test_refuses_more_gpus_than_visible_before_loading(benchmark_script, tmp_path: Path) -> None:
    import torch

    visible = torch.cuda.device_count()
    status = benchmark_script("tp_gpu").main([str(tmp_path), "--plan", "70b", "--tp-sizes", str(visible + 2)])
    assert status == 2
    refused = json.loads((tmp_path / "tp_gpu.json").read_text())["refused"]
    assert f"tp_size = {visible + 2} needs {visible + 2} GPUs" in refused
    assert not (tmp_path / "runs.db").exists()

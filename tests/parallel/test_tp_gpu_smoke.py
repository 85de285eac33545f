"""The TP GPU script on the CPU: tiny model, TP 1 and 2 over gloo, replicas vs TP; and its refusal."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tp_gpu.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tp_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_measures_tp1_tp2_and_compares_replicas(tmp_path: Path) -> None:
    assert _script().main([str(tmp_path), "--smoke"]) == 0
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
    assert _script().main([str(tmp_path), "--smoke", "--tp-sizes", "2"]) == 0
    again = json.loads((tmp_path / "tp_gpu.json").read_text())
    assert [(g["tp_size"], g["rows"], g["already_stored"]) for g in again["groups"]] == [
        (1, [], [1]),
        (2, [], [1, 2]),
    ]
    assert again["comparisons"]["tp2_vs_2x_tp1"][1]["energy_ratio_tp_over_replicas"] == pytest.approx(
        row_2["energy_ratio_tp_over_replicas"]
    )


def test_refuses_more_gpus_than_visible_before_loading(tmp_path: Path) -> None:
    import torch

    visible = torch.cuda.device_count()
    status = _script().main([str(tmp_path), "--plan", "70b", "--tp-sizes", str(visible + 2)])
    assert status == 2
    refused = json.loads((tmp_path / "tp_gpu.json").read_text())["refused"]
    assert f"tp_size = {visible + 2} needs {visible + 2} GPUs" in refused
    assert not (tmp_path / "runs.db").exists()

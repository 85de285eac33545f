"""benchmarks/online_gpu.py on CPU: the stub (fast) and transformers serve on the tiny model (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from llm_energy.store import Store
from llm_energy.store.serving import read_serving_runs

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "online_gpu.py"


def _main():
    spec = importlib.util.spec_from_file_location("online_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("server", ["stub", pytest.param("transformers", marks=pytest.mark.slow)])
def test_smoke_run_writes_json_and_stores_each_rate(tmp_path, server):
    result = _main()([str(tmp_path), "--smoke", "--server", server, "--scales", "8,16", "--window-s", "2"])
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

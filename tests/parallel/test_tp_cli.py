"""`measure --tp 2` on the CPU: rank 0 in this process, one follower process, gloo.

Its own module: a process holds one torch.distributed group at a time, and `test_tp.py` keeps its
group open for the whole module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app

pytest.importorskip("torch")


def test_measure_tp2_on_cpu_through_the_cli(tmp_path: Path) -> None:
    args = ["measure", "--model", "tiny", "--device", "cpu", "--tp", "2", "--batch-size", "2"]
    args += ["--input-len", "8", "--output-len", "3", "--window-s", "0.2", "--idle-s", "0.05"]
    result = CliRunner().invoke(app, [*args, "--db", str(tmp_path / "runs.db"), "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)
    assert run["status"] == "ok"
    assert run["config"]["tp_size"] == 2
    assert run["config"]["engine_facts"]["tp_devices"] == ["cpu", "cpu"]
    assert run["phases"]["decode"]["tokens"] == 2 * 2
    bad = CliRunner().invoke(app, ["measure", "--model", "tiny", "--device", "cpu", "--tp", "3"])
    assert bad.exit_code == 2
    assert "tp_size = 3" in bad.output

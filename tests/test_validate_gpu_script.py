"""benchmarks/validate_gpu.py on the simulated engine: one load, every (trace, batch) run written."""

from __future__ import annotations

import json
from pathlib import Path

from llm_energy.validation.offline import ValidationRun


def test_every_trace_and_batch_size_is_written_as_a_validation_run(benchmark_script, tmp_path: Path) -> None:
    module = benchmark_script("validate_gpu")
    args = ["--engine", "simulated", "--device", "cpu", "--traces", "azure-conv", "azure-code"]
    args += ["--batch-sizes", "4", "8", "--sample", "20", "--idle-s", "1", "--out-dir", str(tmp_path)]
    assert module.main(args) == 0
    runs = sorted(tmp_path.glob("val-simulated-*.json"))
    assert [p.name for p in runs] == [
        f"val-simulated-default-{t}-b{b}.json" for t in ("azure-code", "azure-conv") for b in (4, 8)
    ]
    run = ValidationRun.load(runs[0])
    assert run.requests == 20 and run.batch_size == 4 and run.energy_j > 0
    assert json.loads(runs[0].read_text())["trace"] == "azure-code"

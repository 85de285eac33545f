"""framework-h200.md's figures recompute from the committed raw runs (its report script)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "docs/results/2026-12-02-h200-framework-all-modes"


@pytest.fixture(scope="module")
def runs():
    """The figure's runs as the report script loads them, once for the module."""
    spec = importlib.util.spec_from_file_location(
        "framework_report", ROOT / "benchmarks/framework_all_modes_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load(RAW)


def _j(runs, machine, config, batch):
    row = runs[(runs.machine == machine) & (runs.config == config) & (runs.batch_size == batch)]
    assert len(row) == 1, (machine, config, batch)
    return float(row.j_per_request.iloc[0])


def test_every_point_measured_once_per_machine(runs):
    counts = runs.groupby("machine").size().to_dict()
    # A: HF eager, paged, both vLLM modes (16) + cudagraphs at 1 and 8; B: both vLLM modes again (8),
    # cudagraphs at 64 and 128, compiled (4) and the eager anchor (4).
    assert counts == {"A": 18, "B": 18}


@pytest.mark.parametrize(
    ("machine", "config", "batch", "ratio"),
    [
        ("A", "hf/cudagraphs", 1, 0.61),
        ("A", "hf/cudagraphs", 8, 0.69),
        ("B", "hf/cudagraphs", 64, 0.73),
        ("B", "hf/cudagraphs", 128, 0.81),
        ("B", "hf/compiled", 8, 0.63),
        ("B", "hf/compiled", 128, 0.78),
        ("A", "hf-paged/paged", 128, 3.90),
        ("A", "vllm/cudagraphs", 1, 0.58),
    ],
)
def test_quoted_ratios_over_hf_eager_on_the_same_machine(runs, machine, config, batch, ratio):
    assert _j(runs, machine, config, batch) / _j(runs, machine, "hf/eager", batch) == pytest.approx(
        ratio, abs=0.005
    )


def test_compiled_modes_never_cost_more_than_eager_on_their_machine(runs):
    for (machine, config, batch), _ in runs.groupby(["machine", "config", "batch_size"]):
        if config in ("hf/compiled", "hf/cudagraphs"):
            assert _j(runs, machine, config, batch) < _j(runs, machine, "hf/eager", batch)

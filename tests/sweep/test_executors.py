"""What a point asks its executor for: GPUs for a Ray actor."""

from __future__ import annotations

import pytest

from llm_energy.sweep.executors import gpus_needed
from llm_energy.sweep.spec import Point


@pytest.mark.parametrize(
    ("fields", "has_gpus", "expected"),
    [
        ({"engine": "simulated", "device": "cuda"}, True, 0),
        ({"engine": "hf", "device": "cpu"}, True, 0),
        ({"engine": "hf", "device": "auto"}, False, 0),
        ({"engine": "hf", "device": "auto"}, True, 1),
        ({"engine": "hf", "device": "cuda", "tp_size": 2}, True, 2),
        ({"engine": "hf", "device": "cuda"}, False, 1),
    ],
)
def test_an_actor_holds_the_gpus_its_point_runs_on_and_none_for_the_cpu(fields, has_gpus, expected):
    """CPU and simulated points ask Ray for no GPU (asking for one on a GPU-less cluster hangs)."""
    assert gpus_needed(Point(model="tiny", **fields), cluster_has_gpus=has_gpus) == expected

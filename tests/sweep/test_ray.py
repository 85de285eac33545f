"""The Ray executor for real: a local Ray cluster on 2 CPUs running the simulated engine."""

from __future__ import annotations

import importlib.util

import pytest

from llm_energy.sweep.spec import parse_spec
from llm_energy.sweep.sweep import run_sweep

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed", allow_module_level=True)

SPEC = """\
name: ray-sim
models: [sim]
engines: [{engine: simulated, max_batch_size: 16, crash_at_batch_size: 8}]
batch_sizes: [1, 8, 16]
input_lens: [128]
output_lens: [32]
window_s: 1.0
idle_s: 0.5
"""


@pytest.fixture(scope="module")
def ray_cluster():
    yield
    import ray  # imported after the executor has shielded a broken amdsmi (see executors.py)

    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_ray_executor_streams_results_and_survives_a_killed_worker(ray_cluster, tmp_store):
    """Results come back to the driver, which stores them; a worker killed mid-point becomes an error
    result, the group goes on with a fresh worker, and a rerun resumes exactly like the local executor."""
    spec = parse_spec(SPEC)
    summary = run_sweep(spec, tmp_store, executor="ray", executor_kwargs={"num_cpus": 2})
    by_batch = {r.config["batch_size"]: r for r in tmp_store.read_runs()}
    assert by_batch[1].status == "ok"
    assert by_batch[8].status == "error"
    assert "worker died" in by_batch[8].error
    assert by_batch[16].status == "ok"
    assert by_batch[16].phases["decode"].energy_j > 0
    assert (summary.ok, summary.error) == (2, 1)
    again = run_sweep(spec, tmp_store, executor="ray")
    assert (again.measured, again.skipped) == (0, 3)

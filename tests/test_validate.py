"""`validate`: trace sample → engine (simulated GPU, tiny model on CPU) → measured vs modelled."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.engines.simulated import SimulatedEngine, SimulatedEngineConfig
from llm_energy.errors import ConfigError
from llm_energy.meters.base import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.validation.models import compare
from llm_energy.validation.offline import (
    ValidationRun,
    run_validation,
    sample_requests,
    static_batches,
)
from llm_energy.workloads.traces import Trace


def _trace(n: int = 120, seed: int = 1) -> Trace:
    rng = np.random.default_rng(seed)
    return Trace("synthetic", rng.integers(128, 2048, n), rng.integers(32, 128, n))


def _sim(batch_size: int) -> tuple[SimulatedEngine, EnergyMeter, SimClock]:
    clock = SimClock()
    gpu = SimulatedGpu(clock, PowerTrace.constant(70.0))
    engine = SimulatedEngine(SimulatedEngineConfig(max_batch_size=batch_size), clock, [gpu])
    return engine, EnergyMeter([gpu], clock=clock), clock


def _run(batching: str, batch_size: int = 4):
    engine, meter, clock = _sim(batch_size)
    return run_validation(
        engine,
        meter,
        _trace(),
        batch_size,
        model="sim",
        engine_name="simulated",
        mode=None,
        clock=clock,
        batching=batching,  # type: ignore[arg-type]
    )


def test_static_batches_pad_each_group_to_its_longest_request():
    lin, lout = np.array([5, 9, 2, 7, 3]), np.array([4, 1, 8, 2, 6])
    batches = static_batches(lin, lout, 2)
    assert [(b.batch_size, b.input_tokens, b.output_tokens) for b in batches] == [
        (2, 9, 4),
        (2, 7, 8),
        (1, 3, 6),
    ]


def test_static_run_costs_its_padding_and_the_padded_model_sees_it(sim_profile):
    """Padded batches cost more than the per-request models say; the per-batch estimates match (the
    physical model, `estimate`'s default, and the seed's binning alike)."""
    run = _run("static")
    assert run.batching == "static" and len(run.batches) == 30
    assert sum(b.energy_j for b in run.batches) == pytest.approx(run.energy_j)
    assert run.window_energy_j > run.energy_j  # the simulated prepare (0.5 s per batch) lies between
    errors = {e.method: e for e in compare(run, sim_profile)}
    assert abs(errors["binned-padded"].rel_error) < 0.10
    assert abs(errors["physical-padded"].rel_error) < 0.10
    assert errors["binned"].ratio < 0.8  # the seed's binning ignores padding: it underestimates here
    assert errors["physical"].ratio < 0.8  # so does any per-request model
    assert "physical-continuous" not in errors  # the scheduler replay is for continuous runs


def test_continuous_run_matches_the_per_request_binning(sim_profile):
    """Continuous batching wastes no padding: the per-request models at B are close to the measurement,
    and so is the physical model's replay of the scheduler (`physical-continuous`)."""
    run = _run("continuous")
    assert run.batching == "continuous" and not run.batches
    errors = {e.method: e for e in compare(run, sim_profile)}
    assert "binned-padded" not in errors and "physical-padded" not in errors
    assert abs(errors["binned"].rel_error) < 0.15
    assert abs(errors["parametric"].rel_error) < 0.15
    assert abs(errors["physical"].rel_error) < 0.15
    assert abs(errors["physical-continuous"].rel_error) < 0.15
    assert _run("static").energy_j > run.energy_j


def test_sample_respects_length_limits_and_refuses_too_few():
    tr = _trace(200)
    sample, eligible = sample_requests(tr, 30, max_input_tokens=1000, max_output_tokens=80)
    assert len(sample) == 30 and sample.input_tokens.max() <= 1000 and sample.output_tokens.max() <= 80
    assert eligible == int(((tr.input_tokens <= 1000) & (tr.output_tokens <= 80)).sum())
    with pytest.raises(ConfigError, match="cannot sample 500"):
        sample_requests(tr, 500)


def test_run_round_trips_through_json(tmp_path):
    run = _run("static")
    path = run.save(tmp_path / "run.json")
    back = ValidationRun.load(path)
    assert back == run


def test_cli_measures_then_compares_later(tmp_path, sim_profile):
    runner = CliRunner()
    out = tmp_path / "run.json"
    res = runner.invoke(
        app,
        [
            "validate",
            "--engine",
            "simulated",
            "--sample",
            "40",
            "--batch-size",
            "8",
            "--batching",
            "static",
            "--idle-s",
            "0.5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "no --profile given" in res.output
    prof = tmp_path / "sim.json"
    sim_profile.save(prof)
    res = runner.invoke(app, ["validate", "--measured", str(out), "--profile", str(prof), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    methods = {m["method"]: m for m in doc["models"]}
    assert doc["batching"] == "static" and doc["trace"] == "azure-conv"
    assert methods["binned-padded"]["measured_j"] == pytest.approx(doc["energy_j"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample", "0"], "sample must be"),
        (["--batching", "sideways"], "--batching"),
        (["--max-output-tokens", "1", "--sample", "500"], "cannot sample"),
        (["--option", "nonsense"], "KEY=VALUE"),
    ],
)
def test_cli_bad_input_exits_2(args, message):
    res = CliRunner().invoke(app, ["validate", "--engine", "simulated", *args])
    assert res.exit_code == 2
    assert message in res.output


def test_cli_rejects_a_file_that_is_not_a_run(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 7}')
    res = CliRunner().invoke(app, ["validate", "--measured", str(bad)])
    assert res.exit_code == 2 and "not a validation run" in res.output


def test_tiny_model_runs_padded_batches_on_cpu():
    """The real HF engine runs each padded batch (eager, no per-batch warm-up) with exact lengths."""
    res = CliRunner().invoke(
        app,
        [
            "validate",
            "--engine",
            "hf",
            "--mode",
            "eager",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--sample",
            "12",
            "--batch-size",
            "4",
            "--max-input-tokens",
            "300",
            "--max-output-tokens",
            "20",
            "--idle-s",
            "0.2",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [b["requests"] for b in doc["batches"]] == [4, 4, 4]
    assert all(b["input_tokens_max"] <= 300 and b["output_tokens_max"] <= 20 for b in doc["batches"])

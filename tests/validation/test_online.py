"""`compare`: a real stored serving run (stub server, simulated GPU) against offline runs of its requests."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_trace
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.records import Request
from llm_energy.serving.persist import write_serving_run
from llm_energy.serving.replay_run import ServingRun, replay_servers
from llm_energy.serving.servers import ServerGroup
from llm_energy.serving.servers.stub import stub_server
from llm_energy.store import Store
from llm_energy.validation.online import load_request_set, max_concurrency


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ServingRun]:
    """A store with two serving runs: an older 10-request one and the latest, 24 mixed-length requests."""
    rng = np.random.default_rng(3)
    requests = [
        Request(int(i), int(o), 0.03 * k)
        for k, (i, o) in enumerate(zip(rng.integers(64, 512, 24), rng.integers(8, 40, 24), strict=True))
    ]
    gpu = SimulatedGpu(SimClock(), PowerTrace.constant(300.0), update_period_s=0.05)
    gpu.clock = time.perf_counter  # type: ignore[assignment]
    with warnings.catch_warnings(), ServerGroup([stub_server(token_delay_s=0.005)]) as servers:
        warnings.simplefilter("ignore", UserWarning)  # short meter windows on the simulated GPU
        run = replay_servers(
            servers, requests, gpus=[gpu], idle_s=0.3, warmup_requests=1, config={"model": "stub-model"}
        )
    db = tmp_path_factory.mktemp("compare") / "runs.db"
    with Store(db) as store:
        write_serving_run(store, dataclasses.replace(run, run_id="older-run", records=run.records[:10]))
        write_serving_run(store, run)
    return str(db), run


def _cli(*args: str) -> object:
    return CliRunner().invoke(app, ["compare", *args])


def test_max_concurrency_counts_requests_in_flight():
    sent = np.array([0.0, 0.1, 0.2, 1.0, 1.0])
    done = np.array([0.5, 0.3, 1.0, 1.2, 1.1])
    assert max_concurrency(sent, done) == 3  # 0.2-0.3; at 1.0 one ends before two start: 2
    assert max_concurrency(np.array([]), np.array([])) == 0


def test_request_set_is_the_latest_run_with_its_own_joules(stored):
    db, run = stored
    assert run.attribution is not None and all(r.success for r in run.records)
    with Store(db) as store:
        rs = load_request_set(store)
        older = load_request_set(store, "older-run")
        with pytest.raises(ConfigError, match="no serving run 'nope'"):
            load_request_set(store, "nope")
    assert rs.run_id == run.run_id and rs.requests == 24 and rs.excluded == 0
    assert rs.online_j.sum() == pytest.approx(sum(run.attribution.per_request_j.values()))
    assert list(rs.output_tokens) == [r.output_tokens_received for r in run.records]
    assert rs.max_concurrency == max_concurrency(
        np.array([r.sent_s for r in run.records]), np.array([r.done_s for r in run.records])
    )
    assert rs.max_concurrency >= 2  # 30 ms arrivals, ≥ 40 ms streams: requests overlap
    assert older.requests == 10
    assert rs.online_uncertainty_j > 0  # the power series is stored, so the edge bound is known


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_offline_measured_on_the_simulated_engine_then_reread_from_its_json(stored, tmp_path):
    db, run = stored
    saved = tmp_path / "offline.json"
    res = _cli("--db", db, "--engine", "simulated", "--idle-s", "0.5", "--out", str(saved), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    on, off = doc["online"], doc["offline"]
    assert doc["run_id"] == run.run_id and on["requests"] == off["requests"] == 24
    assert on["output_tokens"] == off["output_tokens"] == sum(r.output_tokens_received for r in run.records)
    assert off["kind"] == "measured" and "simulated" in off["label"] and "continuous" in off["label"]
    assert doc["batch_size"] == doc["max_concurrency"] >= 2
    assert doc["ratio"] == pytest.approx(on["total_j"] / off["total_j"])
    assert doc["ratio_low"] < doc["ratio"] < doc["ratio_high"]
    assert on["j_per_output_token"] == pytest.approx(on["total_j"] / on["output_tokens"])
    assert "whole run" in on["window"] and {w["name"] for w in doc["online_windows"]} >= {"steady-state"}
    # The saved offline run compares again without the engine, to the same figures.
    again = json.loads(_cli("--db", db, "--measured", str(saved), "--json").stdout)
    assert again["offline"]["total_j"] == pytest.approx(off["total_j"])
    # The batch reaches the engine: one request at a time costs more than the online concurrency.
    one = json.loads(_cli("--db", db, "--engine", "simulated", "--batch-size", "1", "--json").stdout)
    assert one["batch_size"] == 1 and one["offline"]["total_j"] > 1.2 * off["total_j"]


def test_offline_modelled_from_a_profile_is_labelled_and_is_the_estimate(stored, tmp_path, sim_profile):
    db, run = stored
    prof = tmp_path / "sim.json"
    sim_profile.save(prof)
    res = _cli("--db", db, "--profile", str(prof), "--batch-size", "4", "--json")
    assert res.exit_code == 0, res.output
    off = json.loads(res.stdout)["offline"]
    est = estimate_trace(
        np.array([r.input_tokens for r in run.records]),
        np.array([r.output_tokens_received for r in run.records]),
        sim_profile,
        batch_size=4,
    )
    assert off["kind"] == "modelled" and "MODELLED" in off["label"]
    assert off["total_j"] == pytest.approx(est.total_j)
    assert off["uncertainty_j"] == pytest.approx(est.uncertainty_j)
    table = _cli("--db", db, "--run-id", "older-run", "--profile", str(prof))
    assert table.exit_code == 0, table.output
    assert "10 requests" in table.output and "online window" in table.output and "MODELLED" in table.output


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_offline_run_of_other_lengths_is_refused(stored, tmp_path):
    db, _ = stored
    saved = tmp_path / "offline.json"
    assert _cli("--db", db, "--engine", "simulated", "--idle-s", "0", "--out", str(saved)).exit_code == 0
    doc = json.loads(saved.read_text())
    doc["output_tokens"][0] += 1
    saved.write_text(json.dumps(doc))
    res = _cli("--db", db, "--measured", str(saved))
    assert res.exit_code == 2 and "lengths differ" in res.output
    fewer = _cli("--db", db, "--run-id", "older-run", "--measured", str(saved))
    assert fewer.exit_code == 2 and "has 10 with a token" in fewer.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-id", "nope", "--profile", "x"], "no serving run 'nope'"),
        ([], "exactly one offline source"),
        (["--engine", "simulated", "--profile", "x"], "exactly one offline source"),
        (["--engine", "hf", "--batch-size", "0"], "--batch-size"),
        (["--engine", "hf"], "no continuous batching"),
    ],
)
def test_bad_input_exits_2(stored, args, message):
    db, _ = stored
    res = _cli("--db", db, *args)
    assert res.exit_code == 2 and message in res.output


def test_an_empty_or_missing_store_exits_2(tmp_path, sim_profile):
    prof = tmp_path / "sim.json"
    sim_profile.save(prof)
    with Store(tmp_path / "empty.db"):
        pass
    res = _cli("--db", str(tmp_path / "empty.db"), "--profile", str(prof))
    assert res.exit_code == 2 and "no serving run" in res.output
    missing = _cli("--db", str(tmp_path / "nothing.db"), "--profile", str(prof))
    assert missing.exit_code == 2 and "nothing.db: no such file" in missing.output

"""Serving runs in the results store, the `replay --server/--db` CLI, and transformers serve for real."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.records import Request
from llm_energy.serving.persist import write_serving_run
from llm_energy.serving.replay_run import replay_servers
from llm_energy.serving.servers import ServerGroup, launch_servers
from llm_energy.serving.servers.stub import stub_server
from llm_energy.store import Store
from llm_energy.store.serving import read_serving_requests, read_serving_runs, read_serving_samples


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_serving_run_round_trips_through_the_store_beside_offline_runs(tmp_path):
    gpu = SimulatedGpu(SimClock(), PowerTrace.constant(300.0), update_period_s=0.05)
    gpu.clock = time.perf_counter  # type: ignore[assignment]
    requests = [Request(8, 20, 0.02 * i) for i in range(30)]
    with ServerGroup([stub_server(token_delay_s=0.005)]) as servers:
        run = replay_servers(
            servers, requests, gpus=[gpu], idle_s=0.3, warmup_requests=1, config={"model": "stub-model"}
        )
    db = tmp_path / "runs.db"
    with Store(db) as store:
        assert read_serving_runs(store).empty  # nothing stored yet: an empty frame, no error
        write_serving_run(store, run)
        assert store.count_runs() == 0  # offline tables untouched
    with Store(db) as store:  # reopened: the extra tables do not make the file look foreign
        runs = read_serving_runs(store)
        reqs = read_serving_requests(store, run.run_id)
        samples = read_serving_samples(store, run.run_id)
    assert list(runs["run_id"]) == [run.run_id] and runs.loc[0, "status"] == "ok"
    assert runs.loc[0, "model"] == "stub-model" and runs.loc[0, "requests"] == 30
    assert runs.loc[0, "energy_j"] == pytest.approx(run.energy.energy_j)
    assert len(reqs) == 30 and reqs["success"].all()
    assert (reqs["output_tokens_received"] == 20).all() and (reqs["input_tokens"] == 8).all()
    assert run.attribution is not None
    assert reqs["energy_j"].sum() == pytest.approx(sum(run.attribution.per_request_j.values()))
    assert len(samples) == len(run.samples) > 5
    assert json.loads(runs.loc[0, "summary_json"])["ok"] == 30
    assert run.per_gpu_energy_j["gpu:0"] == pytest.approx(run.energy.energy_j)


def test_replay_cli_input_errors_exit_2_before_anything_starts():
    runner = CliRunner()
    assert runner.invoke(app, ["replay"]).exit_code == 2  # neither --url nor --server
    both = runner.invoke(
        app, ["replay", "--url", "http://127.0.0.1:9", "--server", "vllm", "--model", "tiny"]
    )
    assert both.exit_code == 2
    assert runner.invoke(app, ["replay", "--server", "transformers"]).exit_code == 2  # no --model
    assert runner.invoke(app, ["replay", "--server", "sglang", "--model", "tiny"]).exit_code == 2
    bad_policy = runner.invoke(app, ["replay", "--url", "http://127.0.0.1:9", "--policy", "random"])
    assert bad_policy.exit_code == 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_transformers_serve_on_cpu_gives_exact_lengths_and_stores_the_run(tmp_path):
    """`replay --server transformers --model tiny --device cpu --db`: a real server, exact lengths, stored."""
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--server",
            "transformers",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--trace",
            "azure-code",
            "--num-requests",
            "24",
            "--closed",
            "6",
            "--idle-s",
            "0",
            "--db",
            str(db),
            "--json",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        env={"LLM_ENERGY_CACHE": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["summary"]["ok"] == 24 and not payload["partial"]
    with Store(db) as store:
        reqs = read_serving_requests(store)
    assert (reqs["output_tokens_received"] == reqs["output_tokens_requested"]).all()
    assert (reqs["input_tokens_reported"] == reqs["input_tokens"]).all()  # text prompts are exact too
    assert (tmp_path / "logs" / "transformers-0.log").exists()


@pytest.mark.slow
def test_two_transformers_replicas_on_cpu_share_the_load(tmp_path):
    servers = launch_servers("transformers", "tiny", replicas=2, device="cpu", cache_root=tmp_path)
    with ServerGroup(servers) as started:
        run = replay_servers(
            started, [Request(16, 4, 0.05 * i) for i in range(12)], idle_s=0, policy="least-outstanding"
        )
    assert all(r.success for r in run.records)
    assert sum(run.replica_requests) == 12 and min(run.replica_requests) >= 3
    assert all(s.pid is not None for s in servers)

"""Sweeps end to end on the simulated engine: resume, infeasible batches, retries, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from llm_energy.store import Store
from llm_energy.sweep.spec import parse_spec
from llm_energy.sweep.sweep import run_sweep

SPEC = """\
name: sim
models: [sim]
engines: [{engine: simulated, max_batch_size: 16}]
batch_sizes: [1, 8, 32, 64]
input_lens: [128, 512]
output_lens: [32]
repeats: 2
window_s: 1.0
idle_s: 0.5
"""


def _point_counts(store: Store) -> Counter:
    return Counter((r.config["point_id"], r.status) for r in store.read_runs())


def test_sweep_measures_skips_stored_and_marks_larger_batches_infeasible(tmp_store):
    """First run: ok points + oom at 32 + 64 not tried; second run measures nothing new."""
    spec = parse_spec(SPEC)
    first = run_sweep(spec, tmp_store)
    assert (first.measured, first.ok, first.oom, first.infeasible, first.skipped) == (6, 8, 2, 2, 0)
    runs = tmp_store.read_runs()
    not_tried = [r for r in runs if r.error and r.error.startswith("not tried")]
    assert {r.config["batch_size"] for r in not_tried} == {64}
    assert all(r.status == "oom" for r in not_tried)
    assert all(r.config["sweep"] == "sim" for r in runs if r.status == "ok")
    before = tmp_store.count_runs()
    second = run_sweep(spec, tmp_store)
    assert (second.measured, second.skipped) == (0, 8)
    assert tmp_store.count_runs() == before


def test_a_time_budget_starts_no_point_once_spent_and_a_resume_measures_the_rest(tmp_store):
    """The budget is spent during the first point: the 7 others are not started nor stored (their claims go
    with the sweep); the same sweep without a budget then measures them as an uninterrupted one would."""
    spec = parse_spec(SPEC)

    def slow(summary):  # the first measured point outlasts the budget (1.5 s: the first plan, environment
        if summary.measured == 1 and not summary.over_budget:  # detection included, fits it on a loaded CI)
            time.sleep(1.6)

    first = run_sweep(spec, tmp_store, time_budget_s=1.5, on_point=slow)
    assert (first.measured, first.over_budget, first.skipped, first.infeasible) == (1, 7, 0, 0)
    assert len({r.config["point_id"] for r in tmp_store.read_runs()}) == 1
    rest = run_sweep(spec, tmp_store)
    assert (rest.skipped, rest.measured, rest.infeasible, rest.over_budget) == (1, 5, 2, 0)
    none = run_sweep(spec, tmp_store, time_budget_s=0.0)
    assert (none.skipped, none.over_budget, none.measured) == (8, 0, 0)  # stored points are not "over budget"


def test_retry_failed_measures_failed_points_again(tmp_store):
    """--retry-failed re-measures stored oom points (and re-derives infeasibility), never ok ones."""
    spec = parse_spec(SPEC)
    run_sweep(spec, tmp_store)
    again = run_sweep(spec, tmp_store, retry_failed=True)
    assert again.ok == 0
    assert (again.oom, again.infeasible, again.skipped) == (2, 2, 4)


def test_changed_environment_is_not_resumed(tmp_store):
    """Points stored under another environment (env_id) are measured again here."""
    spec = parse_spec(SPEC.replace("batch_sizes: [1, 8, 32, 64]", "batch_sizes: [1]"))
    run_sweep(spec, tmp_store)
    statuses = tmp_store.point_statuses(env_id="some-other-gpu")
    assert statuses == {}


def test_kill_9_mid_sweep_loses_and_duplicates_nothing(tmp_path):
    """A sweep killed with SIGKILL and rerun ends with every point stored exactly once per repeat."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        SPEC.replace("max_batch_size: 16}", "max_batch_size: 1024, wall_s_per_call: 0.02}").replace(
            "repeats: 2", "repeats: 1"
        )
    )
    db = tmp_path / "runs.db"
    cmd = [sys.executable, "-m", "llm_energy", "sweep", str(spec_path), "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if db.exists():
                with Store(db) as s:
                    if s.count_runs() >= 2:
                        break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    with Store(db) as s:
        partial = s.count_runs()
    assert 2 <= partial < 8, "the kill should land mid-sweep"
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    with Store(db) as s:
        counts = _point_counts(s)
    assert len(counts) == 8
    assert set(counts.values()) == {1}
    assert {status for _, status in counts} == {"ok"}


@pytest.mark.parametrize("bad", ["models: [sim]\n", "name: x\n"])
def test_cli_bad_spec_exits_2_and_runs_nothing(tmp_path, bad):
    """A broken spec exits 2 before anything runs or any database is created."""
    from typer.testing import CliRunner

    from llm_energy.cli import app

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(bad)
    result = CliRunner().invoke(app, ["sweep", str(spec_path), "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 2
    assert not (tmp_path / "r.db").exists()


def test_cli_dry_run_lists_points_and_estimate(tmp_path):
    """--dry-run prints every point and a GPU-time estimate, and measures nothing."""
    from typer.testing import CliRunner

    from llm_energy.cli import app

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    result = CliRunner().invoke(app, ["sweep", str(spec_path), "--db", str(tmp_path / "r.db"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "8 points" in result.output
    assert "estimated wall time" in result.output  # simulated points: no GPU time to estimate
    assert not (tmp_path / "r.db").exists()


def test_sweep_cli_max_minutes_stops_starting_points_and_says_so(tmp_path):
    """`sweep --max-minutes`: a budget spent before the first point stores nothing and says how to go on;
    a bad value is one line and exit 2; the rerun measures every point."""
    from typer.testing import CliRunner

    from llm_energy.cli import app

    spec, db = tmp_path / "s.yaml", tmp_path / "r.db"
    spec.write_text(SPEC)
    cli = CliRunner()
    spent = cli.invoke(app, ["sweep", str(spec), "--db", str(db), "--max-minutes", "0.000001"])
    assert spent.exit_code == 0, spent.output
    assert "8 not started (--max-minutes spent; rerun to resume)" in " ".join(spent.output.split())
    assert Store(db).count_runs() == 0
    bad = cli.invoke(app, ["sweep", str(spec), "--db", str(db), "--max-minutes", "0"])
    assert bad.exit_code == 2 and "--max-minutes must be > 0, got 0.0" in bad.output
    again = cli.invoke(app, ["sweep", str(spec), "--db", str(db)])
    assert again.exit_code == 0 and "6 measured" in again.output


def test_a_spent_budget_does_not_wait_for_a_point_another_sweep_holds(tmp_store):
    """Another live sweep holds one point: with the budget spent, this sweep counts it as not started instead
    of waiting for the other sweep to finish it (which could take the whole lease)."""
    from llm_energy.store.claims import Owner, PointClaims
    from llm_energy.sweep.sweep import environment_id

    spec = parse_spec(SPEC)
    held = spec.points()[0]
    other = PointClaims(tmp_store, owner=Owner(token="othersweep01"))
    assert other.claim(held.point_id(), environment_id(held)) == "claimed"
    t0 = time.monotonic()
    summary = run_sweep(spec, tmp_store, time_budget_s=0.0)
    assert time.monotonic() - t0 < 10.0
    assert (summary.over_budget, summary.measured, summary.skipped) == (8, 0, 0)


def test_resume_ids_follow_each_engines_packages(tmp_path):
    """A sweep mixing HF and vLLM looks for each point's stored runs under that engine's own env id.

    The id holds the engine's package versions (vLLM's only for vLLM runs); one id per device made a resumed
    H200 sweep measure its eight stored vLLM points again.
    """
    from llm_energy.store.claims import PointClaims
    from llm_energy.sweep.spec import make_point
    from llm_energy.sweep.sweep import SweepSummary, _SweepRun, environment_id

    store = Store(tmp_path / "runs.db")
    run = _SweepRun(store, PointClaims(store), SweepSummary(), None)
    hf, vllm = (
        make_point(model="tiny", engine=e, batch_size=1, input_len=8, output_len=4, device="cpu")
        for e in ("hf", "vllm")
    )
    assert run.env_of(hf) == environment_id(hf)
    assert run.env_of(vllm) == environment_id(vllm)
    assert run.env_of(vllm) != run.env_of(hf)

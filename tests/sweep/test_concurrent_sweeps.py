"""Several real `llm-energy sweep` processes on one database: every point measured and stored once."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from llm_energy.store import Store

SPEC = """\
name: concurrent
models: [sim]
engines: [{engine: simulated, max_batch_size: 1024, wall_s_per_call: WALL}]
batch_sizes: [1, 2, 4, 8]
input_lens: [128, 256, 512]
output_lens: [32]
repeats: 1
window_s: 1.0
idle_s: 0.5
"""
POINTS = 12


def _sweep_cmd(tmp_path: Path, wall_s: float) -> list[str]:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC.replace("WALL", str(wall_s)))
    return [sys.executable, "-m", "llm_energy", "sweep", str(spec_path), "--db", str(tmp_path / "runs.db")]


def _runs_per_point(db: Path) -> Counter[str]:
    with Store(db, read_only=True) as store:
        return Counter(r.config["point_id"] for r in store.read_runs())


def test_three_sweeps_at_once_store_every_point_exactly_once(tmp_path):
    """Three sweeps started together on one file: each point is stored once, all ok, and together the
    processes measured exactly the number of points (none measured twice and thrown away)."""
    cmd = _sweep_cmd(tmp_path, 0.005)
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    counts = _runs_per_point(tmp_path / "runs.db")
    assert len(counts) == POINTS
    assert set(counts.values()) == {1}
    measured = [int(re.search(r"(\d+) measured", out).group(1)) for out, _ in outputs]
    assert sum(measured) == POINTS
    assert sum(m > 0 for m in measured) >= 2, f"the sweeps did not overlap: {measured}"
    with Store(tmp_path / "runs.db", read_only=True) as store:
        assert {r.status for r in store.read_runs()} == {"ok"}


def test_a_sweep_killed_mid_point_leaves_a_claim_that_the_resume_takes_over(tmp_path):
    """kill -9 during a point leaves its claim 'running'; the rerun (same host, owner gone) takes it
    over at once — well inside the 60 s lease — and ends with every point stored once."""
    cmd = _sweep_cmd(tmp_path, 0.01)
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        stale = None
        deadline = time.monotonic() + 60
        while stale is None and time.monotonic() < deadline:
            time.sleep(0.05)
            # The sweep creates the file before SQLite writes its header: an empty file is not a store yet.
            if db.exists() and db.stat().st_size > 0:
                with Store(db, read_only=True) as store:
                    stored = store.point_statuses()
                with closing(sqlite3.connect(db, timeout=5)) as raw:
                    try:
                        running = raw.execute(
                            "SELECT point_id FROM point_claims WHERE state = 'running'"
                        ).fetchall()
                    except sqlite3.OperationalError:  # the table is not there yet
                        continue
                # A point in flight, after at least one stored: the kill lands mid-sweep.
                stale = next((pid for (pid,) in running if pid not in stored and stored), None)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert stale is not None, "the sweep never held a claim mid-sweep"
    with closing(sqlite3.connect(db)) as raw:
        left = raw.execute("SELECT state FROM point_claims WHERE point_id = ?", (stale,)).fetchone()
    assert left == ("running",)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert time.monotonic() - t0 < 50
    counts = _runs_per_point(db)
    assert len(counts) == POINTS
    assert set(counts.values()) == {1}
    assert counts[stale] == 1

"""Point claims on a real SQLite file: one owner at a time, stale claims taken over, stored points skipped."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from llm_energy.records import RunResult
from llm_energy.store import Store
from llm_energy.store.claims import Owner, PointClaims

ENV = "env-a"


def _result(point_id: str, status: str = "ok", run_id: str | None = None) -> RunResult:
    return RunResult(
        run_id=run_id or f"{point_id}-{status}-{time.monotonic_ns()}",
        config={"point_id": point_id, "model": "sim", "batch_size": 1},
        env={"env_id": ENV},
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "injected",
        created_at="2025-01-01T00:00:00+00:00",
    )


def _claim_rows(path: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("SELECT point_id, owner, state FROM point_claims ORDER BY point_id").fetchall()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claimed_point_is_busy_for_others_and_stored_once_released(tmp_path: Path) -> None:
    """Invariant: at most one live owner measures a point; once stored, every other owner skips it."""
    path = tmp_path / "runs.db"
    with Store(path) as one, Store(path) as two:
        a, b = PointClaims(one), PointClaims(two)
        assert a.claim("p1", ENV) == "claimed"
        assert a.claim("p1", ENV) == "claimed"  # claiming again is idempotent for the owner
        assert b.claim("p1", ENV) == "busy"
        assert b.claim("p1", "env-b") == "claimed"  # another environment is another point
        assert a.store_and_release("p1", ENV, [_result("p1")])
        assert b.claim("p1", ENV) == "stored"
        assert one.point_statuses(ENV) == {"p1": {"ok"}}


def test_an_expired_lease_of_another_host_is_taken_over_but_a_live_one_is_not(tmp_path: Path) -> None:
    """A claim whose owner cannot be checked (another host) blocks until its lease expires, not forever."""
    path = tmp_path / "runs.db"
    remote = Owner(host="another-host", pid=1, token="remote")
    with Store(path) as one, Store(path) as two:
        PointClaims(one, owner=remote, lease_s=60.0).claim("p1", ENV)
        assert PointClaims(two).claim("p1", ENV) == "busy"
        later = PointClaims(two, clock=lambda: time.time() + 61.0)
        assert later.claim("p1", ENV) == "claimed"
        assert _claim_rows(path) == [("p1", later.owner.key, "running")]


def test_a_dead_process_on_this_host_loses_its_claim_at_once(tmp_path: Path) -> None:
    """kill -9 leaves a claim behind; its owner's pid is gone here, so the next sweep takes it over
    without waiting for the lease."""
    path = tmp_path / "runs.db"
    dead = Owner(pid=_dead_pid(), token="killed")
    with Store(path) as store:
        PointClaims(store, owner=dead, lease_s=3600.0).claim("p1", ENV)
        assert PointClaims(store).claim("p1", ENV) == "claimed"


def test_retry_failed_re_measures_old_failures_but_not_one_finished_during_this_sweep(tmp_path: Path) -> None:
    """--retry-failed measures a stored failure again once, not once per concurrent sweep."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        store.write_run(_result("p1", "error"))
        assert PointClaims(store).claim("p1", ENV) == "stored"  # failed points stay skipped by default
        started_early = PointClaims(store, retry_failed=True)
        first = PointClaims(store, retry_failed=True)
        assert first.claim("p1", ENV) == "claimed"
        assert started_early.claim("p1", ENV) == "busy"
        first.store_and_release("p1", ENV, [_result("p1", "error")])
        assert started_early.claim("p1", ENV) == "stored"  # measured again while it ran: once is enough
        assert PointClaims(store, retry_failed=True).claim("p1", ENV) == "claimed"  # a later retry


def test_a_taken_over_claim_stores_only_the_first_finisher(tmp_path: Path) -> None:
    """If an owner's lease expired and another owner finished the point first, the late results are
    dropped rather than stored twice."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        slow = PointClaims(store, lease_s=1.0)
        assert slow.claim("p1", ENV) == "claimed"
        fast = PointClaims(store, clock=lambda: time.time() + 5.0)
        assert fast.claim("p1", ENV) == "claimed"
        assert fast.store_and_release("p1", ENV, [_result("p1")])
        assert not slow.store_and_release("p1", ENV, [_result("p1")])
        assert store.count_runs() == 1


def test_release_all_drops_unfinished_claims_only(tmp_path: Path) -> None:
    """A sweep that stops (an error, Ctrl-C) frees the points it will not finish."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        claims = PointClaims(store)
        claims.claim("p1", ENV)
        claims.claim("p2", ENV)
        claims.store_and_release("p2", ENV, [_result("p2")])
        assert claims.release_all() == 1
        assert _claim_rows(path) == [("p2", claims.owner.key, "done")]


def test_keep_alive_renews_the_lease_from_its_own_connection(tmp_path: Path) -> None:
    """While a sweep runs its claims stay valid past one lease; after it stops renewing they expire."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        claims = PointClaims(store, lease_s=0.3)
        claims.claim("p1", ENV)
        with claims.keep_alive():
            time.sleep(0.8)
            # Another host cannot see whether this process lives: only the lease keeps the claim.
            other = PointClaims(Store(path), owner=Owner(host="another-host"))
            try:
                assert other.claim("p1", ENV) == "busy"  # 0.8 s > lease, but renewed every 0.1 s
            finally:
                other.store.close()
        time.sleep(0.5)
        late = PointClaims(store, owner=Owner(host="another-host"))
        assert late.claim("p1", ENV) == "claimed"  # no renewal after the block: the lease runs out


@pytest.mark.parametrize("state", ["running", "done"])
def test_claims_table_is_additive_and_the_store_reopens(tmp_path: Path, state: str) -> None:
    """The claims table is an extra table: the file stays a valid store for readers and writers."""
    path = tmp_path / "runs.db"
    with Store(path) as store:
        claims = PointClaims(store)
        claims.claim("p1", ENV)
        if state == "done":
            claims.store_and_release("p1", ENV, [_result("p1")])
    with Store(path, read_only=True) as again:
        assert again.count_runs() == (1 if state == "done" else 0)

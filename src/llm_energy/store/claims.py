"""Point claims: sweeps running at the same time on one database measure each point once.

Before a sweep measures a point it claims it, in one `BEGIN IMMEDIATE` transaction that looks at
what is stored right now (a point another sweep stored meanwhile is skipped) and at the claim table
(a point another live sweep is measuring is left to it). A point's runs are stored and its claim
released in one transaction, so no moment exists where a point is neither claimed nor stored.

A claim belongs to one owner (host, pid and a random token) and holds a lease that the owner renews
while it runs (`PointClaims.keep_alive`). A claim is stale, and the next claimer takes it over, when
its lease expired or when its owner's process is gone from this host (kill -9 included): a killed
sweep never blocks a resume for longer than one lease, and on the same host not at all.

Table `point_claims` (created on first use; additive, like the serving tables, so the schema version
is unchanged): one row per (point_id, env_id) with owner, host, pid, state (`running` or `done`),
and claimed_at / expires_at / finished_at in Unix seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from llm_energy.errors import StoreError
from llm_energy.processes import process_alive
from llm_energy.records import RunResult

if TYPE_CHECKING:
    import sqlite3

    from llm_energy.store.db import Store

__all__ = ["DEFAULT_LEASE_S", "ClaimOutcome", "Owner", "PointClaims"]

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S: Final = 60.0
"""How long a claim stays valid without renewal; `keep_alive` renews it every third of that."""

ClaimOutcome = Literal["claimed", "stored", "busy"]
"""`claimed`: measure it now; `stored`: measured already (skip); `busy`: another live sweep has it."""

_SCHEMA = """CREATE TABLE IF NOT EXISTS point_claims (
    point_id TEXT NOT NULL, env_id TEXT NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('running', 'done')),
    claimed_at REAL NOT NULL, expires_at REAL, finished_at REAL,
    PRIMARY KEY (point_id, env_id)
)"""


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: this process by default."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def key(self) -> str:
        """The owner's id as stored: host:pid:token."""
        return f"{self.host}:{self.pid}:{self.token}"


class PointClaims:
    """Claims of one sweep (one owner) on a results store; see the module docstring.

    Args:
        store: The results store the sweep writes.
        retry_failed: A point stored only as `oom`/`error` may be claimed again (`--retry-failed`),
            unless another sweep finished it after this one started.
        lease_s: Seconds a claim stays valid without renewal.
        clock: Wall clock in Unix seconds (shared by every process on the database).
        owner: The claimant; default: this process.
    """

    def __init__(
        self,
        store: Store,
        *,
        retry_failed: bool = False,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.time,
        owner: Owner | None = None,
    ) -> None:
        self.store = store
        self.retry_failed = retry_failed
        self.lease_s = lease_s
        self.clock = clock
        self.owner = owner or Owner()
        self.since = clock()
        with store._transaction("prepare point claims in", write=True) as conn:
            conn.execute(_SCHEMA)

    def claim(self, point_id: str, env_id: str) -> ClaimOutcome:
        """Claim a point unless it is stored or another live owner holds it (one transaction).

        Raises:
            StoreError: The database is locked or cannot be written.
        """
        with self.store._transaction("claim a point in", write=True) as conn:
            outcome = self._decide(conn, point_id, env_id)
            if outcome == "claimed":
                now = self.clock()
                conn.execute(
                    "INSERT OR REPLACE INTO point_claims VALUES (?, ?, ?, ?, ?, 'running', ?, ?, NULL)",
                    (
                        point_id,
                        env_id,
                        self.owner.key,
                        self.owner.host,
                        self.owner.pid,
                        now,
                        now + self.lease_s,
                    ),
                )
        return outcome

    def _decide(self, conn: sqlite3.Connection, point_id: str, env_id: str) -> ClaimOutcome:
        statuses = {
            status
            for status, run_env in conn.execute(
                "SELECT status, json_extract(env_json, '$.env_id') FROM runs WHERE point_id = ?",
                (point_id,),
            )
            if run_env == env_id
        }
        if "ok" in statuses or (statuses and not self.retry_failed):
            return "stored"
        row = conn.execute(
            "SELECT owner, host, pid, state, expires_at, finished_at FROM point_claims "
            "WHERE point_id = ? AND env_id = ?",
            (point_id, env_id),
        ).fetchone()
        if row is None:
            return "claimed"
        owner, host, pid, state, expires_at, finished_at = row
        if state == "done":
            # Stored while this sweep ran (reachable only with retry_failed: the runs failed).
            ours_or_recent = owner == self.owner.key or finished_at >= self.since
            return "stored" if statuses and ours_or_recent else "claimed"
        if owner == self.owner.key:
            return "claimed"
        if expires_at is not None and expires_at < self.clock():
            logger.warning("taking over point %s from %s: its lease expired", point_id, owner)
            return "claimed"
        if host == self.owner.host and not process_alive(pid):
            logger.warning("taking over point %s from %s: that process is gone", point_id, owner)
            return "claimed"
        return "busy"

    def store_and_release(self, point_id: str, env_id: str, results: Sequence[RunResult]) -> bool:
        """Store a claimed point's runs and mark it done, in one transaction.

        Returns:
            False (nothing written) when another owner took the claim over and stored the point
            first (possible only after this owner's lease expired); True otherwise.

        Raises:
            StoreError: as `Store.write_runs`; nothing is written and the claim stays.
        """
        action = f"write {len(results)} run(s) to"
        rows = self.store._rows(results, action)
        with self.store._transaction(action, write=True) as conn:
            row = conn.execute(
                "SELECT owner, state FROM point_claims WHERE point_id = ? AND env_id = ?", (point_id, env_id)
            ).fetchone()
            if row is not None and row[0] != self.owner.key and row[1] == "done":
                logger.warning(
                    "point %s was stored by %s after it took our claim over: ours dropped", point_id, row[0]
                )
                return False
            self.store._insert(conn, rows, action)
            now = self.clock()
            conn.execute(
                "INSERT OR REPLACE INTO point_claims VALUES (?, ?, ?, ?, ?, 'done', ?, NULL, ?)",
                (point_id, env_id, self.owner.key, self.owner.host, self.owner.pid, now, now),
            )
        return True

    def release_all(self) -> int:
        """Drop every claim this owner still holds (points it will not finish); return how many."""
        with self.store._transaction("release point claims in", write=True) as conn:
            cursor = conn.execute(
                "DELETE FROM point_claims WHERE owner = ? AND state = 'running'", (self.owner.key,)
            )
        return int(cursor.rowcount)

    def renew(self, store: Store | None = None) -> int:
        """Extend the lease of every claim this owner holds; return how many (through `store`)."""
        with (store or self.store)._transaction("renew point claims in", write=True) as conn:
            cursor = conn.execute(
                "UPDATE point_claims SET expires_at = ? WHERE owner = ? AND state = 'running'",
                (self.clock() + self.lease_s, self.owner.key),
            )
        return int(cursor.rowcount)

    @contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Renew this owner's leases every third of `lease_s` on a thread with its own connection.

        An in-memory store (one connection, no other process) needs no renewal.
        """
        from llm_energy.store.db import MEMORY, Store

        if str(self.store.path) == MEMORY:
            yield
            return
        stop = threading.Event()

        def renew_until_stopped() -> None:
            own: Store | None = None
            try:
                while not stop.wait(self.lease_s / 3):
                    try:
                        own = own or Store(self.store.path, timeout_s=self.store.timeout_s)
                        self.renew(own)
                    except StoreError as exc:  # locked for a while: the next tick tries again
                        logger.warning("could not renew point claims: %s", exc)
            finally:
                if own is not None:
                    own.close()

        thread = threading.Thread(target=renew_until_stopped, name="llm-energy-claims", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=self.store.timeout_s + 5)

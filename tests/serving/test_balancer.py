"""Client-side balancing over two stub servers on loopback."""

from __future__ import annotations

import asyncio

import pytest

from llm_energy.errors import ConfigError
from llm_energy.records import Request
from llm_energy.serving import StubConfig, StubServer, run_load
from llm_energy.serving.balancer import Balancer


def _requests(n: int, gap_s: float, output_tokens: int = 10) -> list[Request]:
    return [Request(8, output_tokens, gap_s * i) for i in range(n)]


def test_round_robin_alternates_replicas_exactly():
    with StubServer() as a, StubServer() as b:
        records = asyncio.run(run_load([a.url, b.url], _requests(20, 0.01), policy="round-robin"))
    assert all(r.success for r in records)
    assert [r.replica for r in records] == [i % 2 for i in range(20)]
    assert len(a.bodies) == len(b.bodies) == 10


def test_least_outstanding_avoids_the_slow_replica_where_round_robin_does_not():
    """Replica 1 streams 25x slower, so it holds its requests longer and least-outstanding sends it fewer."""
    fast, slow = StubConfig(token_delay_s=0.002), StubConfig(token_delay_s=0.05)
    counts = {}
    for policy in ("round-robin", "least-outstanding"):
        with StubServer(fast) as a, StubServer(slow) as b:
            balancer = Balancer(2, policy)
            records = asyncio.run(run_load([a.url, b.url], _requests(40, 0.02), balancer=balancer))
        assert all(r.success for r in records)
        assert balancer.outstanding == [0, 0]
        counts[policy] = balancer.sent
    assert counts["round-robin"] == [20, 20]
    fast_n, slow_n = counts["least-outstanding"]
    assert fast_n + slow_n == 40 and slow_n <= 10 < 30 <= fast_n


def test_balancer_rejects_bad_input():
    with pytest.raises(ConfigError, match="policy"):
        Balancer(2, "random")
    with pytest.raises(ConfigError, match="replica"):
        Balancer(0)
    with pytest.raises(ConfigError, match="2 replicas but 1 URLs"):
        asyncio.run(run_load(["http://127.0.0.1:9"], _requests(1, 0), balancer=Balancer(2), check=False))

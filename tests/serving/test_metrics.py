"""Serving metrics as pure functions over hand-made records: latencies, SLOs, windows, energy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llm_energy.errors import ConfigError
from llm_energy.serving import (
    RequestRecord,
    attribute_energy,
    e2e_s,
    itl_s,
    latency_summary,
    meets_slo,
    serving_energy,
    steady_state_window,
    summarise,
    tpot_s,
    ttft_s,
)
from llm_energy.workloads.slo import parse_slo


def rec(
    index: int,
    sent: float,
    times: list[float],
    done: float | None = None,
    *,
    n: int | None = None,
    input_tokens: int = 10,
    requested: int | None = None,
    failure: str | None = None,
) -> RequestRecord:
    """A record sent at `sent` with token chunks at `times`, done at `done` (default: last chunk)."""
    received = len(times) if n is None else n
    return RequestRecord(
        index=index,
        scheduled_s=sent,
        sent_s=sent,
        first_token_s=times[0] if times else None,
        done_s=done if done is not None else (times[-1] if times else sent),
        token_times_s=tuple(times),
        input_tokens=input_tokens,
        output_tokens_requested=received if requested is None else requested,
        output_tokens_received=received,
        success=failure is None,
        error=failure and f"injected {failure}",
        failure=failure,  # type: ignore[arg-type]
        status_code=None,
    )


def test_tpot_is_decode_time_over_n_minus_one():
    """TPOT = (E2E − TTFT)/(n − 1): the time after the first token spread over the later tokens."""
    r = rec(0, 10.0, [10.5, 10.7, 10.9, 11.1], done=11.3)
    assert ttft_s(r) == pytest.approx(0.5)
    assert e2e_s(r) == pytest.approx(1.3)
    assert tpot_s(r) == pytest.approx((1.3 - 0.5) / 3)
    assert itl_s(r) == pytest.approx([0.2, 0.2, 0.2])


def test_tpot_uses_tokens_received_not_chunks():
    """A chunk may carry several tokens: n is the received count (from usage), not the chunk count."""
    r = rec(0, 0.0, [1.0, 2.0], done=2.0, n=5)
    assert tpot_s(r) == pytest.approx((2.0 - 1.0) / 4)


def test_undefined_latencies_are_none():
    assert tpot_s(rec(0, 0.0, [0.3])) is None  # one token: no TPOT
    no_token = rec(1, 0.0, [], done=1.0, failure="timeout")
    assert ttft_s(no_token) is None and tpot_s(no_token) is None and itl_s(no_token) == []
    assert latency_summary([]) is None


def test_latency_summary_percentiles():
    s = latency_summary([float(i) for i in range(1, 101)])
    assert s is not None
    assert (s.count, s.mean_s, s.max_s) == (100, pytest.approx(50.5), 100.0)
    assert (s.p50_s, s.p90_s, s.p99_s) == pytest.approx((50.5, 90.1, 99.01))


def test_slo_attainment_and_goodput_on_hand_made_records():
    """Attainment counts every sent request (failures miss); goodput is the window's throughput of
    successful requests times the share of successful requests that met every bound."""
    records = [
        rec(0, 0.0, [0.5, 0.55, 0.6]),  # ttft 0.5, tpot 0.05: good
        rec(1, 1.0, [1.2, 1.25, 1.3]),  # good
        rec(2, 2.0, [4.5, 4.6]),  # ttft 2.5 > 2: misses
        rec(3, 3.0, [3.1, 3.5, 3.9]),  # tpot 0.4 > 0.1: misses
        rec(4, 4.0, [], done=4.2, failure="http"),
        rec(5, 5.0, [5.1, 5.15], done=9.5),  # e2e 4.5 > 3: misses; tpot 4.4 (n=2)
        rec(6, 6.0, [6.1]),  # one token: tpot met trivially
        rec(7, 7.0, [7.1, 7.15]),  # good, but completes after the window
    ]
    slo = parse_slo("ttft=2s,tpot=100ms,e2e=3s")
    assert [meets_slo(r, slo) for r in records] == [True, True, False, False, False, False, True, True]
    s = summarise(records, slo, window=(0.0, 7.0))
    assert s.slo_attainment_pct == pytest.approx(100 * 4 / 8)
    assert s.request_throughput_per_s == pytest.approx(5 / 7.0)  # ok and done in [0, 7]: 0, 1, 2, 3, 6
    assert s.goodput_per_s == pytest.approx(5 / 7.0 * 4 / 7)  # 4 of the 7 successful requests met it
    assert (s.requests, s.ok, s.failed, s.failures) == (8, 7, 1, {"http": 1})
    assert s.ttft is not None and s.ttft.count == 7
    assert s.tpot is not None and s.tpot.count == 6


def _overloaded(n: int = 100, arrival_gap_s: float = 0.1) -> list[RequestRecord]:
    """Open-loop arrivals at 10/s into a server that admits everything but slows down as more are in
    flight (continuous batching past its limit): the first 60 requests meet TTFT 2 s and finish fast,
    the last 40 wait ~5 s for their first token and finish after the steady-state window closed."""
    records = []
    for i in range(n):
        sent = i * arrival_gap_s
        wait = 0.05 if i < 60 else 5.0
        first = sent + wait
        records.append(rec(i, sent, [first + 0.1 * k for k in range(5)]))
    return records


def test_goodput_of_an_overloaded_run_is_not_its_throughput():
    """Goodput = requests/s that met the SLO. In an overloaded run every request completing inside the
    steady-state window met the SLO (the late ones complete in the drain), yet only 60% of all did:
    goodput must be 60% of throughput, not all of it (the count of good completions in the window
    said goodput = throughput)."""
    records = _overloaded()
    slo = parse_slo("ttft=2s")
    window = steady_state_window(records)
    in_window = [r for r in records if window[0] <= r.done_s <= window[1]]
    assert all(meets_slo(r, slo) for r in in_window)  # what fooled the window count
    s = summarise(records, slo, window)
    assert s.slo_attainment_pct == pytest.approx(60.0)
    assert s.goodput_per_s == pytest.approx(0.6 * s.request_throughput_per_s)
    assert s.goodput_per_s < s.request_throughput_per_s


def test_goodput_equals_throughput_when_every_success_met_the_slo_even_with_failures():
    """Failures lower attainment but not goodput: throughput already counts successful requests only."""
    records = [rec(i, float(i), [i + 0.1, i + 0.2]) for i in range(6)]
    records += [rec(6 + i, 6.0 + i, [], done=6.5 + i, failure="timeout") for i in range(4)]
    s = summarise(records, parse_slo("ttft=1s"), window=(0.0, 10.0))
    assert s.slo_attainment_pct == pytest.approx(60.0)
    assert s.goodput_per_s == pytest.approx(s.request_throughput_per_s) == pytest.approx(0.6)


def test_summary_counts_tokens_by_chunk_time_and_short_outputs():
    records = [
        rec(0, 0.0, [1.0, 2.0, 3.0], n=6, requested=6),  # 2 tokens per chunk
        rec(1, 0.0, [0.5, 4.5], requested=8),  # short: 2 of 8
    ]
    s = summarise(records, window=(0.5, 2.5))
    assert s.output_tokens_per_s == pytest.approx((2 + 2 + 1) / 2.0)
    assert s.short_outputs == 1 and s.output_tokens == 8
    assert s.slo_attainment_pct is None and s.goodput_per_s is None
    whole = summarise(records)
    assert (whole.window_start_s, whole.window_end_s) == (0.0, 4.5)
    assert whole.request_throughput_per_s == pytest.approx(2 / 4.5)


def test_steady_state_window_rule():
    """Start: the k_w-th completion (k_w = ceil(f_w·n)); end: the first send of the last k_d."""
    records = [rec(i, float(i), [i + 0.5], done=i + 3.0 - 0.1 * i) for i in range(10)]
    # done times: 3.0, 3.9, 4.8, ..., 11.1; sent: 0..9
    assert steady_state_window(records, 0.1, 0.1) == pytest.approx((3.0, 9.0))
    assert steady_state_window(records, 0.2, 0.3) == pytest.approx((3.9, 7.0))
    assert steady_state_window(records, 0.0, 0.0) == pytest.approx((0.0, 3.0 + 9 * 0.9))
    with pytest.raises(ConfigError, match="no steady state"):
        steady_state_window(records, 0.5, 0.5)
    with pytest.raises(ConfigError, match="warmup_fraction"):
        steady_state_window(records, 1.0, 0.1)
    with pytest.raises(ConfigError, match="no records"):
        steady_state_window([])


def test_serving_energy_idle_dynamic_per_request_and_token():
    records = [rec(i, float(i), [i + 0.5, i + 1.0]) for i in range(4)]  # done at 1, 2, 3, 4
    e = serving_energy(records, (1.25, 3.25), energy_j=400.0, idle_power_w=50.0)
    assert (e.duration_s, e.warmup_excluded_s, e.drain_excluded_s) == pytest.approx((2.0, 1.25, 0.75))
    assert (e.idle_energy_j, e.dynamic_energy_j) == pytest.approx((100.0, 300.0))
    assert e.requests == 2  # done at 2 and 3
    assert e.output_tokens == pytest.approx(4)  # chunks at 1.5, 2.0, 2.5, 3.0
    assert e.energy_per_request_j == pytest.approx(200.0)
    assert e.energy_per_output_token_j == pytest.approx(100.0)
    assert e.dynamic_energy_per_request_j == pytest.approx(150.0)
    assert e.dynamic_energy_per_output_token_j == pytest.approx(75.0)
    bare = serving_energy(records, (10.0, 11.0), energy_j=5.0)
    assert bare.idle_energy_j is None and bare.dynamic_energy_per_request_j is None
    assert math.isnan(bare.energy_per_request_j)


def test_attribution_splits_two_to_one_for_two_to_one_tokens():
    """In an interval, energy is shared in proportion to tokens processed in it."""
    a = rec(0, 0.0, [0.2, 0.4, 0.6, 0.8], input_tokens=4)  # 4 prefill + 4 decode in [0, 1)
    b = rec(1, 0.0, [0.3, 0.7], input_tokens=2)  # 2 prefill + 2 decode
    split = attribute_energy([a, b], [(0.0, 1.0, 90.0)])
    assert split.per_request_j == pytest.approx({0: 60.0, 1: 30.0})
    assert split.unattributed_j == 0.0 and split.total_j == pytest.approx(90.0)


def test_attribution_puts_prefill_at_first_token_and_decode_at_each_chunk():
    a = rec(0, 0.0, [0.5, 1.5, 1.6], input_tokens=9)  # prefill+1 token in [0,1); 2 tokens in [1,2)
    b = rec(1, 1.0, [1.2, 1.4], input_tokens=2, n=4)  # 2 prefill + 2 chunks of 2 tokens in [1,2)
    split = attribute_energy([a, b], [(0.0, 1.0, 10.0), (1.0, 2.0, 80.0)])
    assert split.per_request_j == pytest.approx({0: 10.0 + 80.0 * 2 / 8, 1: 80.0 * 6 / 8})
    weighted = attribute_energy([a, b], [(1.0, 2.0, 80.0)], prefill_token_weight=0.0)
    assert weighted.per_request_j == pytest.approx({0: 80.0 * 2 / 6, 1: 80.0 * 4 / 6})


def test_attribution_without_tokens_uses_time_in_flight_else_unattributed():
    a = rec(0, 0.0, [3.5], done=4.0)  # in flight over [0, 4]
    b = rec(1, 1.0, [3.6], done=4.0)  # in flight over [1, 4]
    split = attribute_energy([a, b], [(0.0, 2.0, 30.0), (3.0, 4.0, 20.0), (5.0, 6.0, 7.0)])
    # [0,2): no tokens; overlaps 2 s and 1 s -> 20 J and 10 J. [3,4): 11 vs 11 tokens -> 10 J each.
    assert split.per_request_j == pytest.approx({0: 30.0, 1: 20.0})
    assert split.unattributed_j == pytest.approx(7.0)


def test_attribution_sums_to_window_energy():
    """Invariant: per-request joules plus the unattributed part equal the intervals' total, for any
    mix of requests (failed and truncated ones included) and any grid of intervals."""
    rng = np.random.default_rng(7)
    records = []
    for i in range(200):
        sent = float(rng.uniform(0, 50))
        n = int(rng.integers(0, 30))
        times = sorted((sent + rng.uniform(0.01, 10, size=n)).tolist())
        failure = None if rng.random() < 0.8 else str(rng.choice(["truncated", "timeout", "http"]))
        records.append(rec(i, sent, times, done=(times[-1] if times else sent) + 0.01, failure=failure))
    edges = np.sort(rng.uniform(-5, 70, size=120))
    intervals = [
        (float(a), float(b), float(rng.uniform(0, 300))) for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
    split = attribute_energy(records, intervals)
    assert set(split.per_request_j) == set(range(200))
    assert all(j >= 0 for j in split.per_request_j.values())
    total = sum(e for _, _, e in intervals)
    assert split.total_j == pytest.approx(total)
    assert sum(split.per_request_j.values()) + split.unattributed_j == pytest.approx(total, rel=1e-12)


def test_attribution_rejects_bad_intervals():
    records = [rec(0, 0.0, [0.5])]
    with pytest.raises(ConfigError, match="overlap"):
        attribute_energy(records, [(0.0, 2.0, 1.0), (1.0, 3.0, 1.0)])
    with pytest.raises(ConfigError, match="finite"):
        attribute_energy(records, [(0.0, 1.0, float("nan"))])
    with pytest.raises(ConfigError, match="weights"):
        attribute_energy(records, [(0.0, 1.0, 1.0)], decode_token_weight=-1.0)

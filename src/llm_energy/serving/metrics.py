"""Serving metrics as pure functions over `RequestRecord`s: latencies, SLOs, windows and energy.

Nothing here reads a clock or the network, so every figure can be recomputed from stored records
(vLLM's `calculate_metrics` habit). The definitions, all in seconds:

- TTFT = first_token_s − sent_s; E2E = done_s − sent_s;
- TPOT = (E2E − TTFT) / (n − 1) for n = output tokens received > 1 (undefined for n ≤ 1);
- ITL = the gaps between consecutive token-carrying chunks;
- send lag = sent_s − scheduled_s (how late the load generator sent).

Throughput and energy figures use a **measured window**, normally the steady state given by
`steady_state_window` (warm-up and drain excluded): requests are counted when they complete inside
it, output tokens when their chunk arrives inside it (a chunk carrying k tokens counts k); the window
[start_s, end_s] includes both ends.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.serving.records import LatencySummary, RequestRecord

__all__ = [
    "EnergyAttribution",
    "ServingEnergy",
    "ServingSummary",
    "attribute_energy",
    "e2e_s",
    "itl_s",
    "latency_summary",
    "meets_slo",
    "send_lag_s",
    "serving_energy",
    "steady_state_window",
    "summarise",
    "tpot_s",
    "ttft_s",
]


def ttft_s(record: RequestRecord) -> float | None:
    """Return the time to first token in seconds, or None if no token arrived."""
    return None if record.first_token_s is None else record.first_token_s - record.sent_s


def e2e_s(record: RequestRecord) -> float:
    """Return the end-to-end latency in seconds (send to end of stream or to failure)."""
    return record.done_s - record.sent_s


def tpot_s(record: RequestRecord) -> float | None:
    """Return the time per output token after the first, (E2E − TTFT) / (n − 1), in seconds.

    None when fewer than two tokens were received or no token arrived.
    """
    ttft = ttft_s(record)
    n = record.output_tokens_received
    if ttft is None or n < 2:
        return None
    return (e2e_s(record) - ttft) / (n - 1)


def itl_s(record: RequestRecord) -> list[float]:
    """Return the inter-token latencies in seconds: gaps between consecutive token chunks."""
    times = record.token_times_s
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def send_lag_s(record: RequestRecord) -> float:
    """Return how late the request was sent, sent_s − scheduled_s, in seconds."""
    return record.sent_s - record.scheduled_s


def latency_summary(values_s: Sequence[float]) -> LatencySummary | None:
    """Return mean, p50, p90, p99 and max of `values_s` (seconds), or None when there are none."""
    if not len(values_s):
        return None
    arr = np.asarray(values_s, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return LatencySummary(len(arr), float(arr.mean()), float(p50), float(p90), float(p99), float(arr.max()))


def meets_slo(record: RequestRecord, slo_s: Mapping[str, float]) -> bool:
    """Return True if the request succeeded and every bound in `slo_s` holds.

    Bounds are `ttft`, `tpot` and `e2e` in seconds (see `workloads.slo.parse_slo`). A request with fewer
    than two output tokens has no TPOT and meets any `tpot` bound; a failed request meets none.
    """
    if not record.success:
        return False
    values = {"ttft": ttft_s(record), "tpot": tpot_s(record), "e2e": e2e_s(record)}
    for metric, bound_s in slo_s.items():
        if metric not in values:
            raise ConfigError(f"unknown SLO metric {metric!r}; expected one of {', '.join(values)}")
        value = values[metric]
        if metric == "ttft" and value is None:
            return False
        if value is not None and value > bound_s:
            return False
    return True


def steady_state_window(
    records: Sequence[RequestRecord], warmup_fraction: float = 0.1, drain_fraction: float = 0.1
) -> tuple[float, float]:
    """Return the steady-state window (start_s, end_s), warm-up and drain excluded.

    With n records (failed ones included: they occupied the server too), k_w = ceil(warmup_fraction
    x n) and k_d = ceil(drain_fraction x n):

    - the window **starts** when the k_w-th request completes (the k_w-th smallest `done_s`): until
      then the server is filling up. With k_w = 0 it starts at the first send;
    - the window **ends** when the first of the last k_d requests is sent (the (n − k_d + 1)-th
      smallest `sent_s`): after that the load only drains. With k_d = 0 it ends at the last `done_s`.

    Raises:
        ConfigError: If there are no records, a fraction is outside [0, 1), or the window is empty
            (too few requests or too short a run for these fractions).
    """
    if not records:
        raise ConfigError("no records: nothing to take a steady-state window of")
    for name, frac in (("warmup_fraction", warmup_fraction), ("drain_fraction", drain_fraction)):
        if not 0 <= frac < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {frac!r}")
    n = len(records)
    # round first: 0.3 x 10 is 3.0000000000000004 in floating point, which must give 3, not 4
    k_warm, k_drain = math.ceil(round(warmup_fraction * n, 9)), math.ceil(round(drain_fraction * n, 9))
    done = sorted(r.done_s for r in records)
    sent = sorted(r.sent_s for r in records)
    start_s = done[k_warm - 1] if k_warm else sent[0]
    end_s = sent[n - k_drain] if k_drain else done[-1]
    if not end_s > start_s:
        raise ConfigError(
            f"no steady state in {n} requests: warm-up ends at {start_s:.3f} s (after {k_warm} completions) "
            f"but drain starts at {end_s:.3f} s (last {k_drain} sends); send more requests or lower "
            "the fractions"
        )
    return start_s, end_s


def _token_events(record: RequestRecord) -> tuple[list[float], float]:
    """Return a record's token chunk times and the tokens each chunk stands for."""
    times = list(record.token_times_s)
    if not times:
        return times, 0.0
    return times, record.output_tokens_received / len(times)


def _window(records: Sequence[RequestRecord], window: tuple[float, float] | None) -> tuple[float, float]:
    if window is None:
        return min(r.sent_s for r in records), max(r.done_s for r in records)
    start_s, end_s = window
    if not end_s > start_s:
        raise ConfigError(f"window end must be after its start, got {window}")
    return start_s, end_s


def _in_window_counts(records: Sequence[RequestRecord], start_s: float, end_s: float) -> tuple[int, float]:
    """Return (successful requests completed in [start, end], their output tokens received in it)."""
    completed = 0
    tokens = 0.0
    for r in records:
        if not r.success:
            continue
        completed += start_s <= r.done_s <= end_s
        times, per_chunk = _token_events(r)
        tokens += per_chunk * sum(start_s <= t <= end_s for t in times)
    return completed, tokens


@dataclass(frozen=True)
class ServingSummary:
    """What a serving run achieved. Latencies cover every successful request; rates the window.

    Attributes:
        requests: Requests sent (one record each).
        ok: Requests that succeeded.
        failed: Requests that failed (ok + failed = requests).
        failures: Failed requests per failure kind (`timeout`, `http`, `truncated`, ...).
        short_outputs: Successful requests that received fewer tokens than requested.
        input_tokens: Prompt tokens of the successful requests.
        output_tokens: Output tokens received by the successful requests.
        window_start_s: Start of the measured window (clock seconds).
        window_end_s: End of the measured window (clock seconds).
        window_duration_s: Length of the measured window in seconds.
        ttft: Time to first token (successful requests).
        tpot: Time per output token after the first (successful requests with ≥ 2 tokens).
        itl: Inter-token latency over all gaps of the successful requests.
        e2e: End-to-end latency (successful requests).
        send_lag: How late the generator sent each request (all requests).
        request_throughput_per_s: Successful requests completed in the window per second.
        output_tokens_per_s: Output tokens of successful requests received in the window per second.
        slo_s: The SLO bounds in seconds (empty: none given).
        slo_attainment_pct: Percent of all sent requests that succeeded within every bound; None
            without an SLO.
        goodput_per_s: Requests per second that met the SLO: `request_throughput_per_s` x the
            fraction of successful requests (whole run) that met every bound; None without an SLO.
            Not the count of good requests completed in the window: under overload the requests
            that complete inside the window are the early, fast ones (the late ones complete in the
            drain), so that count would report goodput = throughput at any attainment.
    """

    requests: int
    ok: int
    failed: int
    failures: Mapping[str, int]
    short_outputs: int
    input_tokens: int
    output_tokens: int
    window_start_s: float
    window_end_s: float
    window_duration_s: float
    ttft: LatencySummary | None
    tpot: LatencySummary | None
    itl: LatencySummary | None
    e2e: LatencySummary | None
    send_lag: LatencySummary | None
    request_throughput_per_s: float
    output_tokens_per_s: float
    slo_s: Mapping[str, float]
    slo_attainment_pct: float | None
    goodput_per_s: float | None


def summarise(
    records: Sequence[RequestRecord],
    slo_s: Mapping[str, float] | None = None,
    window: tuple[float, float] | None = None,
) -> ServingSummary:
    """Return counts, latency distributions, throughput and SLO attainment of a run.

    Args:
        records: One record per sent request, failures included.
        slo_s: SLO bounds in seconds by metric (`parse_slo`); None or empty: no SLO figures.
        window: The measured window (start_s, end_s) for throughput (and so goodput), normally
            `steady_state_window(records)`; None: from the first send to the last completion.

    Raises:
        ConfigError: If there are no records, the window is empty or an SLO metric is unknown.
    """
    if not records:
        raise ConfigError("no records to summarise")
    start_s, end_s = _window(records, window)
    duration_s = end_s - start_s
    ok = [r for r in records if r.success]
    slo = dict(slo_s or {})
    completed, tokens = _in_window_counts(records, start_s, end_s)
    attainment_pct = goodput_per_s = None
    if slo:
        good = sum(meets_slo(r, slo) for r in records)
        attainment_pct = 100.0 * good / len(records)
        goodput_per_s = completed / duration_s * good / len(ok) if ok else 0.0
    return ServingSummary(
        requests=len(records),
        ok=len(ok),
        failed=len(records) - len(ok),
        failures=dict(Counter(r.failure or "unknown" for r in records if not r.success)),
        short_outputs=sum(r.output_tokens_received < r.output_tokens_requested for r in ok),
        input_tokens=sum(r.input_tokens for r in ok),
        output_tokens=sum(r.output_tokens_received for r in ok),
        window_start_s=start_s,
        window_end_s=end_s,
        window_duration_s=duration_s,
        ttft=latency_summary([t for r in ok if (t := ttft_s(r)) is not None]),
        tpot=latency_summary([t for r in ok if (t := tpot_s(r)) is not None]),
        itl=latency_summary([gap for r in ok for gap in itl_s(r)]),
        e2e=latency_summary([e2e_s(r) for r in ok]),
        send_lag=latency_summary([send_lag_s(r) for r in records]),
        request_throughput_per_s=completed / duration_s,
        output_tokens_per_s=tokens / duration_s,
        slo_s=slo,
        slo_attainment_pct=attainment_pct,
        goodput_per_s=goodput_per_s,
    )


@dataclass(frozen=True)
class ServingEnergy:
    """Energy of a serving run's measured window, split into idle and dynamic, per request and token.

    Attributes:
        window_start_s: Start of the window (clock seconds).
        window_end_s: End of the window (clock seconds).
        duration_s: Window length in seconds.
        warmup_excluded_s: Seconds from the first send to the window start, left out.
        drain_excluded_s: Seconds from the window end to the last completion, left out.
        energy_j: Energy measured over the window in joules, idle included.
        idle_energy_j: Idle power x duration in joules; None when idle power is unknown.
        dynamic_energy_j: energy_j − idle_energy_j in joules; None when idle power is unknown.
        requests: Successful requests completed in the window.
        output_tokens: Output tokens of successful requests received in the window.
        energy_per_request_j: energy_j / requests (NaN without requests).
        energy_per_output_token_j: energy_j / output_tokens (NaN without tokens).
        dynamic_energy_per_request_j: dynamic_energy_j / requests; None without idle power.
        dynamic_energy_per_output_token_j: dynamic_energy_j / output_tokens; None without idle power.
    """

    window_start_s: float
    window_end_s: float
    duration_s: float
    warmup_excluded_s: float
    drain_excluded_s: float
    energy_j: float
    idle_energy_j: float | None
    dynamic_energy_j: float | None
    requests: int
    output_tokens: float
    energy_per_request_j: float
    energy_per_output_token_j: float
    dynamic_energy_per_request_j: float | None
    dynamic_energy_per_output_token_j: float | None


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def serving_energy(
    records: Sequence[RequestRecord],
    window: tuple[float, float],
    energy_j: float,
    idle_power_w: float | None = None,
) -> ServingEnergy:
    """Return J/request and J/token of a window, total and above idle.

    Args:
        records: The run's records.
        window: The window (start_s, end_s) the energy was measured over, normally
            `steady_state_window(records)`.
        energy_j: Energy measured over the window in joules (e.g. `Measurement.gpu_energy_j`).
        idle_power_w: Idle power of the measured domains in watts (e.g. summed
            `Measurement.idle_power_w`); None leaves the idle/dynamic split out.

    Raises:
        ConfigError: If there are no records or the window is empty.
    """
    if not records:
        raise ConfigError("no records: nothing to attribute energy to")
    start_s, end_s = _window(records, window)
    duration_s = end_s - start_s
    completed, tokens = _in_window_counts(records, start_s, end_s)
    idle_j = None if idle_power_w is None else idle_power_w * duration_s
    dynamic_j = None if idle_j is None else energy_j - idle_j
    return ServingEnergy(
        window_start_s=start_s,
        window_end_s=end_s,
        duration_s=duration_s,
        warmup_excluded_s=max(start_s - min(r.sent_s for r in records), 0.0),
        drain_excluded_s=max(max(r.done_s for r in records) - end_s, 0.0),
        energy_j=energy_j,
        idle_energy_j=idle_j,
        dynamic_energy_j=dynamic_j,
        requests=completed,
        output_tokens=tokens,
        energy_per_request_j=_ratio(energy_j, completed),
        energy_per_output_token_j=_ratio(energy_j, tokens),
        dynamic_energy_per_request_j=None if dynamic_j is None else _ratio(dynamic_j, completed),
        dynamic_energy_per_output_token_j=None if dynamic_j is None else _ratio(dynamic_j, tokens),
    )


@dataclass(frozen=True)
class EnergyAttribution:
    """Energy split over requests. Invariant: sum(per_request_j) + unattributed_j == total_j.

    Attributes:
        per_request_j: Joules per request index (every record appears, possibly with 0).
        unattributed_j: Energy of intervals in which no request was in flight, in joules.
        total_j: Sum of the intervals' energies in joules.
    """

    per_request_j: Mapping[int, float]
    unattributed_j: float
    total_j: float


def attribute_energy(
    records: Sequence[RequestRecord],
    window_energy_j: Sequence[tuple[float, float, float]],
    *,
    prefill_token_weight: float = 1.0,
    decode_token_weight: float = 1.0,
) -> EnergyAttribution:
    """Split the energy of each interval over the requests that processed tokens in it.

    Rule, per interval [start_s, end_s) with energy E:

    - a request's **prefill** counts its `input_tokens` x `prefill_token_weight` in the interval
      holding its first token time (prefill completes when the first token is emitted);
    - each **output** token counts `decode_token_weight` in the interval holding its chunk's time
      (a chunk carrying k tokens counts k);
    - E is split in proportion to these counts. An interval without any token but with requests in
      flight (sent before its end, done after its start: e.g. a long prefill) is split by the time
      each overlaps it; an interval with no request in flight is left unattributed.

    Failed requests take their share of the tokens they did process (a truncated stream's prefill
    and chunks). Weights let a caller cost a prefill token below a decode token (e.g. from a
    profile's J/token per phase); equal weights count plain tokens.

    Args:
        records: The run's records.
        window_energy_j: Intervals (start_s, end_s, joules), sorted and not overlapping, on the
            records' clock (e.g. consecutive meter windows).
        prefill_token_weight: Weight of one prompt token (≥ 0).
        decode_token_weight: Weight of one output token (≥ 0).

    Returns:
        The split; per-request joules plus the unattributed part sum to the intervals' total.

    Raises:
        ConfigError: If an interval ends before it starts, intervals overlap or are unsorted, an
            energy is not finite, or a weight is negative.
    """
    if prefill_token_weight < 0 or decode_token_weight < 0:
        raise ConfigError("token weights must be ≥ 0")
    starts = np.array([w[0] for w in window_energy_j], dtype=np.float64)
    ends = np.array([w[1] for w in window_energy_j], dtype=np.float64)
    energy = np.array([w[2] for w in window_energy_j], dtype=np.float64)
    if not np.isfinite(energy).all() or bool((ends < starts).any()):
        raise ConfigError("each interval needs end_s ≥ start_s and a finite energy")
    if bool((starts[1:] < ends[:-1]).any()):
        raise ConfigError("energy intervals must be sorted by time and must not overlap")
    owner: list[int] = []
    times: list[float] = []
    weights: list[float] = []
    for pos, r in enumerate(records):
        chunk_times, per_chunk = _token_events(r)
        if r.first_token_s is not None:
            owner.append(pos)
            times.append(r.first_token_s)
            weights.append(r.input_tokens * prefill_token_weight)
        owner += [pos] * len(chunk_times)
        times += chunk_times
        weights += [per_chunk * decode_token_weight] * len(chunk_times)
    t = np.asarray(times, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    who = np.asarray(owner, dtype=np.int64)
    slot = np.searchsorted(starts, t, side="right") - 1
    inside = (slot >= 0) & (t < ends[np.clip(slot, 0, None)]) if len(starts) else np.zeros(len(t), bool)
    slot, w, who = slot[inside], w[inside], who[inside]
    weight_per_interval = np.bincount(slot, weights=w, minlength=len(starts))
    share = np.zeros(len(records), dtype=np.float64)
    has_tokens = weight_per_interval > 0
    if len(slot):
        frac = np.where(has_tokens[slot], w / np.where(has_tokens[slot], weight_per_interval[slot], 1.0), 0.0)
        share += np.bincount(who, weights=frac * energy[slot], minlength=len(records))
    unattributed_j = 0.0
    sent = np.array([r.sent_s for r in records], dtype=np.float64)
    done = np.array([r.done_s for r in records], dtype=np.float64)
    for i in np.flatnonzero(~has_tokens):
        overlap_s = np.clip(np.minimum(done, ends[i]) - np.maximum(sent, starts[i]), 0.0, None)
        if overlap_s.sum() > 0:
            share += energy[i] * overlap_s / overlap_s.sum()
        else:
            unattributed_j += float(energy[i])
    return EnergyAttribution(
        per_request_j={r.index: float(j) for r, j in zip(records, share, strict=True)},
        unattributed_j=unattributed_j,
        total_j=float(energy.sum()),
    )

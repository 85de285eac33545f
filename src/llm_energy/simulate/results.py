"""What a simulation reports: replay's per-request records and summary, and the fleet's energy.

The per-request outcome becomes `serving.RequestRecord`s (sent = scheduled = arrival; the first token and
the end are the simulated times; a failed request is an HTTP 400 as a server refusing a prompt that
cannot fit) and the summary is `serving.ServingSummary` with the same definitions as `replay` (TTFT,
TPOT = (E2E − TTFT)/(n − 1), E2E, SLO attainment, goodput; the steady-state window of
`serving.steady_state_window`: warm-up and drain excluded), computed in columns so a day of requests
summarises in a moment. Output tokens in a window are counted from the simulated iterations (per-token
times are not kept, so there is no inter-token latency summary).

Energy, all from the simulated iterations: total = busy iterations + idle power between them (and while
starting or paused) + parked GPUs; idle = idle power × GPU-time held; dynamic = total − idle − parked;
GPU-hours = GPU-time held by instances. Every figure is `simulated` from the `modelled` profile.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llm_energy.carbon import Footprint, GridIntensity
from llm_energy.errors import ConfigError
from llm_energy.serving.metrics import ServingEnergy, ServingSummary, latency_summary
from llm_energy.serving.records import RequestRecord
from llm_energy.simulate.instance import RequestTable, Segments
from llm_energy.units import j_to_kwh

__all__ = ["EnergyTotals", "SimResult", "records_of", "steady_window", "summarise_table"]


def records_of(table: RequestTable) -> list[RequestRecord]:
    """One `RequestRecord` per simulated request (what `replay --records` writes)."""
    out = []
    for i in range(len(table)):
        failed = bool(table.failed[i])
        first = None if math.isnan(table.first_s[i]) else float(table.first_s[i])
        out.append(
            RequestRecord(
                index=i,
                scheduled_s=float(table.arrival_s[i]),
                sent_s=float(table.arrival_s[i]),
                first_token_s=first,
                done_s=float(table.done_s[i]),
                token_times_s=(),
                input_tokens=int(table.input_tokens[i]),
                output_tokens_requested=int(table.output_tokens[i]),
                output_tokens_received=0 if failed else int(table.output_tokens[i]),
                success=not failed,
                error="request does not fit the instance's KV cache" if failed else None,
                failure="http" if failed else None,
                status_code=400 if failed else None,
                replica=int(table.instance[i]),
            )
        )
    return out


def steady_window(table: RequestTable, warmup: float = 0.1, drain: float = 0.1) -> tuple[float, float]:
    """`serving.steady_state_window`'s window, from the columns (same rule, same rounding).

    Raises:
        ConfigError: no requests, or no steady state.
    """
    n = len(table)
    if not n:
        raise ConfigError("no requests: nothing to take a steady-state window of")
    k_warm, k_drain = math.ceil(round(warmup * n, 9)), math.ceil(round(drain * n, 9))
    done, sent = np.sort(table.done_s), np.sort(table.arrival_s)
    start = float(done[k_warm - 1]) if k_warm else float(sent[0])
    end = float(sent[n - k_drain]) if k_drain else float(done[-1])
    if not end > start:
        raise ConfigError(
            f"no steady state in {n} requests: warm-up ends at {start:.3f} s, drain starts {end:.3f} s"
        )
    return start, end


def _overlap(seg: Segments, start_s: float, end_s: float) -> np.ndarray:
    """Share of each segment inside [start_s, end_s] (a zero-length segment counts if inside)."""
    s, e = np.asarray(seg.start_s), np.asarray(seg.end_s)
    length = e - s
    inside = np.clip(np.minimum(e, end_s) - np.maximum(s, start_s), 0.0, None)
    point = (length <= 0) & (s >= start_s) & (s <= end_s)
    out: np.ndarray = np.where(length > 0, inside / np.where(length > 0, length, 1.0), point.astype(float))
    return out


def summarise_table(
    table: RequestTable, segments: Segments, slo_s: Mapping[str, float], window: tuple[float, float]
) -> ServingSummary:
    """`serving.summarise` over the simulated requests, in columns (output tokens from the iterations)."""
    ok = ~table.failed
    ttft = table.first_s - table.arrival_s
    e2e = table.done_s - table.arrival_s
    n_out = table.output_tokens.astype(float)
    multi = ok & (table.output_tokens > 1)
    tpot = (e2e[multi] - ttft[multi]) / (n_out[multi] - 1)
    start, end = window
    duration = end - start
    completed = int((ok & (table.done_s >= start) & (table.done_s <= end)).sum())
    tokens = (
        float(np.dot(np.asarray(segments.tokens), _overlap(segments, start, end))) if segments.tokens else 0.0
    )
    attainment = goodput = None
    if slo_s:
        good = ok.copy()
        bounds = {"ttft": ttft, "e2e": e2e}
        for metric, bound in slo_s.items():
            if metric == "tpot":
                t_all = np.where(table.output_tokens > 1, (e2e - ttft) / np.maximum(n_out - 1, 1), 0.0)
                good &= t_all <= bound
            else:
                good &= bounds[metric] <= bound
        attainment = 100.0 * int(good.sum()) / len(table)
        goodput = completed / duration * int(good.sum()) / int(ok.sum()) if ok.any() else 0.0
    fails = Counter("http" for _ in range(int((~ok).sum())))
    return ServingSummary(
        requests=len(table), ok=int(ok.sum()), failed=int((~ok).sum()), failures=dict(fails),
        short_outputs=0, input_tokens=int(table.input_tokens[ok].sum()),
        output_tokens=int(table.output_tokens[ok].sum()), window_start_s=start, window_end_s=end,
        window_duration_s=duration, ttft=latency_summary(ttft[ok].tolist()),
        tpot=latency_summary(tpot.tolist()), itl=None,
        e2e=latency_summary(e2e[ok].tolist()), send_lag=latency_summary([0.0] * len(table)),
        request_throughput_per_s=completed / duration, output_tokens_per_s=tokens / duration,
        slo_s=dict(slo_s), slo_attainment_pct=attainment, goodput_per_s=goodput,
    )  # fmt: skip


@dataclass(frozen=True)
class EnergyTotals:
    """Energy of the whole simulated span (first arrival to last completion), joules unless named.

    Invariant: total_j = busy_j + idle_gaps_j + parked_j, and idle_j + dynamic_j + parked_j = total_j.
    """

    span_s: float
    total_j: float
    busy_j: float
    idle_gaps_j: float
    parked_j: float
    idle_j: float
    dynamic_j: float
    requests_ok: int
    j_per_request: float
    gpu_hours: float
    kwh: float
    co2_kg: float | None
    cost: float | None


def energy_totals(
    table: RequestTable,
    segments: Segments,
    span_s: float,
    gpus: int,
    idle_power_per_gpu_w: float,
    parked_power_w: float,
    grid: GridIntensity | None = None,
    price_per_kwh: float | None = None,
) -> EnergyTotals:
    """Totals over [0, span_s] (see `EnergyTotals`)."""
    e = np.asarray(segments.energy_j)
    busy = np.asarray(segments.busy, bool)
    held_gpu_s = (
        float(
            np.dot(
                np.asarray(segments.gpus, float), np.asarray(segments.end_s) - np.asarray(segments.start_s)
            )
        )
        if len(e)
        else 0.0
    )
    parked_j = parked_power_w * max(gpus * span_s - held_gpu_s, 0.0)
    total = float(e.sum()) + parked_j
    idle = idle_power_per_gpu_w * held_gpu_s
    ok = int((~table.failed).sum())
    kwh = j_to_kwh(total)
    return EnergyTotals(
        span_s=span_s, total_j=total, busy_j=float(e[busy].sum()), idle_gaps_j=float(e[~busy].sum()),
        parked_j=parked_j, idle_j=idle, dynamic_j=total - idle - parked_j, requests_ok=ok,
        j_per_request=total / ok if ok else math.nan, gpu_hours=held_gpu_s / 3600.0, kwh=kwh,
        co2_kg=None if grid is None else kwh * grid.g_per_kwh / 1000.0,
        cost=None if price_per_kwh is None else kwh * price_per_kwh,
    )  # fmt: skip


def window_energy(
    table: RequestTable, segments: Segments, window: tuple[float, float], idle_power_per_gpu_w: float
) -> ServingEnergy:
    """`serving.ServingEnergy` of the steady-state window: J/request and J/token, total and above idle."""
    start, end = window
    share = _overlap(segments, start, end)
    energy = float(np.dot(np.asarray(segments.energy_j), share))
    lengths = np.asarray(segments.end_s) - np.asarray(segments.start_s)
    idle = idle_power_per_gpu_w * float(np.dot(np.asarray(segments.gpus, float) * lengths, share))
    ok = ~table.failed
    completed = int((ok & (table.done_s >= start) & (table.done_s <= end)).sum())
    tokens = float(np.dot(np.asarray(segments.tokens), share))
    dyn = energy - idle

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    return ServingEnergy(
        window_start_s=start, window_end_s=end, duration_s=end - start,
        warmup_excluded_s=max(start - float(table.arrival_s.min()), 0.0),
        drain_excluded_s=max(float(table.done_s.max()) - end, 0.0), energy_j=energy, idle_energy_j=idle,
        dynamic_energy_j=dyn, requests=completed, output_tokens=tokens,
        energy_per_request_j=ratio(energy, completed), energy_per_output_token_j=ratio(energy, tokens),
        dynamic_energy_per_request_j=ratio(dyn, completed),
        dynamic_energy_per_output_token_j=ratio(dyn, tokens),
    )  # fmt: skip


def timeline(segments: Segments, span_s: float, bin_s: float) -> dict[str, list[float]]:
    """Mean power (W), GPUs held and output tokens/s per bin of `bin_s` seconds."""
    edges = np.arange(0.0, span_s + bin_s, bin_s)
    s, e = np.asarray(segments.start_s), np.asarray(segments.end_s)
    power, gpus, tokens = [], [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        share = _overlap(segments, float(a), float(b))
        inside = np.clip(np.minimum(e, b) - np.maximum(s, a), 0.0, None)
        power.append(float(np.dot(np.asarray(segments.energy_j), share)) / bin_s)
        gpus.append(float(np.dot(np.asarray(segments.gpus, float), inside)) / bin_s)
        tokens.append(float(np.dot(np.asarray(segments.tokens), share)) / bin_s)
    return {
        "start_s": edges[:-1].tolist(),
        "power_w": power,
        "gpus_held": gpus,
        "output_tokens_per_s": tokens,
    }


@dataclass(frozen=True)
class SimResult:
    """A simulated run: replay's summary and steady-state energy, the fleet's totals, and what was assumed."""

    summary: ServingSummary
    energy: ServingEnergy
    totals: EnergyTotals
    footprint: Footprint
    config: dict[str, Any]
    plan: list[str]
    reconfigurations: dict[str, int]
    instance_requests: list[int]
    preemptions: int
    timeline: dict[str, list[float]]
    labels: list[str]
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    table: RequestTable | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the keys `replay --json` writes (summary, energy, notes) plus the simulation's."""
        return {
            "simulated": True,
            "source": "modelled",
            "labels": self.labels,
            "config": self.config,
            "summary": asdict(self.summary),
            "energy": asdict(self.energy),
            "totals": asdict(self.totals),
            "footprint": self.footprint.to_dict(),
            "plan": self.plan,
            "reconfigurations": self.reconfigurations,
            "replica_requests": self.instance_requests,
            "preemptions": self.preemptions,
            "timeline": self.timeline,
            "notes": self.notes,
            "wall_s": self.wall_s,
        }


def reconfiguration_counts(events: Sequence[tuple[float, str]]) -> dict[str, int]:
    """Reconfigurations by kind (start, drain, clock, reshard)."""
    return dict(Counter(what.split(" ", 1)[0] for _, what in events))

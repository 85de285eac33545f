"""A recommender candidate: one configuration evaluated on a group of requests, and its SLO checks.

Kept apart from the search (`recommend.search`) so the records the output, classes and validation modules
read do not pull in the search's models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from llm_energy.errors import ConfigError
from llm_energy.workloads.slo import SLO_METRICS


@dataclass(frozen=True)
class Candidate:
    """One configuration evaluated on a group of requests (the trace, or one workload class).

    Attributes:
        profile: Profile name (bundled name or file) the configuration comes from.
        engine: Engine of the profile.
        mode: Mode of the profile.
        batch_size: Batch size B, the engine's knob (vLLM's max_num_seqs); for `largest_feasible`, the
            largest calibrated batch the KV cache holds at the group's mean shape.
        energy_per_request_j: Mean estimated GPU energy per request (static: per padded batch;
            continuous: at the load-aware concurrency, idle power included; the search ranks by it).
        uncertainty_per_request_j: Its 1-σ: the physical model's (leave-one-out ⊕ meter, widened outside
            the calibrated range) summed over requests (fully correlated), plus the idle power's bound.
        ttft_s: Time to first token. Continuous: the prefill of one request at the mean input length
            plus the decode step at `concurrency` (the step its prefill joins; chunked prefill), or
            the full-batch figure once the rate fills B; static: the mean over requests of their
            padded batch's prefill.
        tpot_s: Decode step time at the mean lengths (continuous: at `concurrency`; static: the mean
            of the padded batches' steps).
        e2e_s: Time a request spends in its batch (TTFT + (mean output − 1) decode steps, at
            `concurrency`; static: the mean of the padded batches' whole run).
        throughput_per_s: Requests/s all replicas complete.
        meets_slo: Every SLO bound met.
        keeps_up: Throughput ≥ the arrival rate.
        fits_memory: B ≤ the batch the KV cache holds at the group's mean shape (the physical model's
            KV capacity).
        replicas: Copies of the configuration serving the rate.
        gpus: GPUs used (replicas × the profile's GPU count).
        clock_mhz: SM clock (None: the default, maximum clock, as measured).
        largest_feasible: B = the largest feasible batch (the seed's baseline rule; here the largest
            calibrated batch that fits the KV cache at the group's mean shape).
        source: `profile` (the profile's physical model) or `modelled (DVFS)` when a clock is applied.
        batching: `static` (padded batches in trace order) or `continuous` (per request).
        concurrency: Continuous: modelled mean requests in flight per replica, n = min(B, λ · E2E(n))
            (`llm_energy.recommend.load`); static: None (full batches).
        idle_j_per_request: Idle power × time per request with no request in flight (in the energy).
        energy_full_batch_j: The energy per request if every batch were a full B (the figure before
            the load model; continuous: equal to `energy_per_request_j` once the rate fills B).
        ttft_full_batch_s: TTFT of a full batch: the prefill of B prompts at once (continuous: the
            figure before the chunked-prefill model; static: the full padded batches' prefill).
        tpot_full_batch_s: TPOT of a full batch.
        e2e_full_batch_s: E2E of a full batch.
    """

    profile: str
    engine: str
    mode: str | None
    batch_size: int
    energy_per_request_j: float
    uncertainty_per_request_j: float
    ttft_s: float
    tpot_s: float
    e2e_s: float
    throughput_per_s: float
    meets_slo: bool
    keeps_up: bool
    fits_memory: bool = True
    replicas: int = 1
    gpus: int = 1
    clock_mhz: float | None = None
    largest_feasible: bool = False
    source: str = "profile"
    batching: str = "continuous"
    concurrency: float | None = None
    idle_j_per_request: float = 0.0
    energy_full_batch_j: float | None = None
    ttft_full_batch_s: float | None = None
    tpot_full_batch_s: float | None = None
    e2e_full_batch_s: float | None = None

    @property
    def feasible(self) -> bool:
        """Meets the SLO, fits and keeps up with the arrival rate."""
        return self.meets_slo and self.keeps_up and self.fits_memory

    @property
    def key(self) -> tuple[str, int | None, float | None]:
        """The configuration without the workload: (profile, batch or None, clock)."""
        return (self.profile, None if self.largest_feasible else self.batch_size, self.clock_mhz)

    def label(self) -> str:
        """Short description: profile, batch, clock, replicas."""
        batch = f"largest feasible ({self.batch_size})" if self.largest_feasible else str(self.batch_size)
        clock = f" @ {self.clock_mhz:.0f} MHz (modelled)" if self.clock_mhz else ""
        reps = f" × {self.replicas} replicas" if self.replicas > 1 else ""
        return f"{self.profile} batch {batch}{clock}{reps}"

    def slo_ratio(self, slo_s: Mapping[str, float], rate_per_s: float) -> float:
        """Worst of latency / bound and rate / throughput (≤ 1: feasible on those counts)."""
        ratios = [latency(self, m) / b for m, b in slo_s.items()]
        ratios.append(rate_per_s / self.throughput_per_s if self.throughput_per_s > 0 else math.inf)
        return max(ratios)


def latency(c: Candidate, metric: str) -> float:
    """The candidate's latency for an SLO metric (ttft, tpot, e2e), seconds."""
    return {"ttft": c.ttft_s, "tpot": c.tpot_s, "e2e": c.e2e_s}[metric]


def check_slo(slo_s: Mapping[str, float]) -> None:
    """Raise ConfigError for an SLO metric other than ttft / tpot / e2e or a bound ≤ 0."""
    unknown = set(slo_s) - set(SLO_METRICS)
    if unknown:
        raise ConfigError(f"unknown SLO metric(s) {sorted(unknown)}; valid: {', '.join(SLO_METRICS)}")
    for metric, bound in slo_s.items():
        if not bound > 0:
            raise ConfigError(f"SLO bound {metric}={bound} must be > 0 seconds")

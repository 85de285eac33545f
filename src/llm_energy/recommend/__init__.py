"""Recommend the least-energy configuration that meets a latency SLO at a trace's arrival rate.

Candidates are every (profile, batch size) pair: each profile is one measured configuration (engine,
mode, GPU), and its calibration grid says, at the trace's mean lengths, how long a batch of B takes to
prefill (the TTFT a request sees when its batch starts) and how long a decode step takes (its TPOT).
A candidate is feasible when it meets every SLO bound and its throughput B / T(B) keeps up with the
trace's rate (T(B) = time a request spends in the batch). Among feasible candidates the one with the
least estimated energy per request wins; the baseline is the naive batch-1 run and the fastest
candidate is shown beside it, with the energy–latency Pareto frontier. Queueing delay is not modelled:
latencies are those of a full batch. Every figure is an estimate from the profiles (`modelled`), to be
checked by measuring (the recommendation's validation on the GPU is a separate step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_trace
from llm_energy.modeling.profile import EnergyProfile


@dataclass(frozen=True)
class Candidate:
    """One configuration evaluated on the trace."""

    profile: str
    batch_size: int
    energy_per_request_j: float
    uncertainty_per_request_j: float
    ttft_s: float
    tpot_s: float
    throughput_per_s: float
    meets_slo: bool
    keeps_up: bool

    @property
    def feasible(self) -> bool:
        """Meets the SLO and keeps up with the arrival rate."""
        return self.meets_slo and self.keeps_up


@dataclass(frozen=True)
class Recommendation:
    """The chosen candidate, the baseline, the fastest, and all candidates."""

    choice: Candidate | None
    baseline: Candidate
    fastest: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    rate_per_s: float = 0.0

    @property
    def saving(self) -> float | None:
        """Fractional energy saving of the choice over the batch-1 baseline."""
        if self.choice is None:
            return None
        return 1 - self.choice.energy_per_request_j / self.baseline.energy_per_request_j

    def kwh_per_day_saved(self) -> float | None:
        """KWh per day saved at the trace's rate."""
        if self.choice is None:
            return None
        delta_j = self.baseline.energy_per_request_j - self.choice.energy_per_request_j
        return delta_j * self.rate_per_s * 86400 / 3.6e6

    def pareto(self) -> list[Candidate]:
        """Candidates not beaten on both energy per request and TPOT."""
        ordered = sorted(self.candidates, key=lambda c: (c.tpot_s, c.energy_per_request_j))
        frontier: list[Candidate] = []
        for c in ordered:
            if not frontier or c.energy_per_request_j < frontier[-1].energy_per_request_j:
                frontier.append(c)
        return frontier


def evaluate(
    profile: EnergyProfile,
    name: str,
    batch: int,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    rate_per_s: float,
    slo_s: Mapping[str, float],
) -> Candidate:
    """Estimate one (profile, batch) candidate on the trace."""
    est = estimate_trace(input_tokens, output_tokens, profile, batch_size=batch)
    lin, lout = float(np.mean(input_tokens)), float(np.mean(output_tokens))
    ttft_s = float(profile.grid.prefill_batch_s(batch, lin))
    tpot_s = float(profile.grid.decode_step_s(batch, lin, max(lout, 2)))
    per_request_s = ttft_s + max(lout - 1, 0) * tpot_s
    throughput = batch / per_request_s if per_request_s > 0 else float("inf")
    meets = all(
        {"ttft": ttft_s, "tpot": tpot_s, "e2e": per_request_s}[metric] <= bound
        for metric, bound in slo_s.items()
    )
    n = max(est.requests, 1)
    return Candidate(
        name,
        batch,
        est.total_j / n,
        est.uncertainty_j / n,
        ttft_s,
        tpot_s,
        throughput,
        meets,
        throughput >= rate_per_s,
    )


def recommend(
    profiles: Mapping[str, EnergyProfile],
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    rate_per_s: float,
    slo_s: Mapping[str, float],
    batch_sizes: Sequence[int] | None = None,
) -> Recommendation:
    """Search every profile × batch size for the least energy per request meeting the SLO at the rate.

    Raises:
        ConfigError: no profile, a rate ≤ 0, or an SLO metric other than ttft / tpot / e2e.
    """
    if not profiles:
        raise ConfigError("recommend needs at least one profile")
    if not rate_per_s > 0:
        raise ConfigError(f"arrival rate must be > 0 requests/s, got {rate_per_s}")
    unknown = set(slo_s) - {"ttft", "tpot", "e2e"}
    if unknown:
        raise ConfigError(f"unknown SLO metric(s) {sorted(unknown)}; valid: ttft, tpot, e2e")
    candidates = []
    for name, prof in profiles.items():
        sizes = batch_sizes or [int(b) for b in prof.grid.batches]
        candidates += [evaluate(prof, name, b, input_tokens, output_tokens, rate_per_s, slo_s) for b in sizes]
    feasible = [c for c in candidates if c.feasible]
    choice = min(feasible, key=lambda c: c.energy_per_request_j) if feasible else None
    ones = [c for c in candidates if c.batch_size == 1] or candidates
    baseline = max(ones, key=lambda c: c.energy_per_request_j)
    fastest = min(candidates, key=lambda c: c.tpot_s)
    return Recommendation(choice, baseline, fastest, candidates, rate_per_s)


__all__ = ["Candidate", "Recommendation", "evaluate", "recommend"]

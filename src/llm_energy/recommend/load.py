"""Load-aware operating point of a continuous-batching engine at a trace's arrival rate (a model).

A continuous engine (vLLM, hf-paged, the simulated engine) with a batch knob B (`max_num_seqs`) runs
as many requests at once as are in flight, up to B. At a rate that cannot fill B it runs a smaller
batch, and the GPU's static power is spread over fewer requests; a larger B then saves nothing. Model
(mean-value, steady state; labelled `modelled` wherever it is shown):

    λ      = rate / replicas                                  (arrivals per replica)
    TTFT(n) = P(1) + TPOT(n)                                  (a request joining n running ones)
    E2E(n) = TTFT(n) + (L̄out − 1) · TPOT(n)                  (the profile's physical model at batch
                                                              n, the requests' mean lengths, DVFS)
    n      = min(B, λ · E2E(n)),  n ≥ 1                       (Little's law; the least fixed point)
    J/req  = E(n) + P_idle · max(0, 1/λ − E2E(1))             (E(n): the physical model at batch n)

TTFT in continuous batching (assumption): vLLM schedules a new request's prefill into the next step
beside the running decodes (chunked prefill); it does not wait for a batch of prompts. A request's
TTFT is its own prefill, P(1) (the model's prefill of a batch of 1 at the mean input length), plus the
decode step of the running batch it joins, TPOT(n); no queueing while n < B. When the rate fills B
(n would exceed B) a request waits for a slot: the search then reports the full-batch figures (TTFT =
the prefill of a batch of B, a lower bound on an unbounded queue) and the candidate does not keep up
(`keeps_up` is false: capacity is B / E2E of full batches, prefill of B included). Static engines
(padded batches) keep the prefill of their (partial) batch as TTFT (`search` module). Checked against
the H100 online measurement (vLLM cudagraphs, max_num_seqs 256, Azure conv at 3.2 / 7.6 / 19 req/s):
modelled 44 / 44 / 46 ms against a measured p90 of 73 / 73 / 534 ms, n = 36 at 19 req/s against a
measured mean near 40; the 19 req/s p90 is that of bursts above B (peak concurrency 286), not modelled.

The second term is the time per request with no request in flight, when λ · E2E(1) < 1 (the GPU idles
that fraction of the time); P_idle is the profile's idle power (`PhysicalModel.idle_power_w`, measured
before the calibration runs or given at the fit), `DEFAULT_IDLE_POWER_W` (H100, measured) where the
profile has none, or the caller's. At a rate that fills B
(λ · E2E(B) ≥ B) n = B and J/req is the full-batch figure the search used before (kept beside it as
`Candidate.energy_full_batch_j`). Latencies are those at batch n.

Assumptions (not modelled): arrivals are smooth (no bursts: a bursty trace runs above n at times —
measured peak concurrency 286 at 19 req/s with a mean near 40 — and idles between bursts), no queueing
delay below B, no prefill of other arrivals in the step a request joins, the GPU idles only when the
mean concurrency is below one (not in Poisson gaps at a mean above one), and a request's energy at
concurrency n is that of a homogeneous batch of n at the mean lengths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_IDLE_POWER_W = 140.0
"""GPU power with no request in flight, W: the H100's measured idle power with vLLM loaded (131–149 W,
docs/results/2026-11-23-h100-online-vllm/online/online_gpu.json, `idle_power_w`), mid-range."""
DEFAULT_IDLE_POWER_UNC_W = 10.0
"""Its bound, W: half the measured range, rounded up."""

_GRID_POINTS = 256
_BISECTIONS = 50


@dataclass(frozen=True)
class OperatingPoint:
    """Where a continuous engine runs at a rate (one replica).

    Attributes:
        concurrency: Mean requests in flight, n (1 ≤ n ≤ B).
        idle_s_per_request: Seconds per request with no request in flight (0 once λ · E2E(1) ≥ 1).
        full: n = B (the rate fills the batch: the full-batch figures hold).
    """

    concurrency: float
    idle_s_per_request: float
    full: bool


def free_concurrency(e2e_s: Callable[[np.ndarray], np.ndarray], rate_per_s: float, top: float) -> float:
    """The least n ≥ 1 with n = λ · E2E(n) in [1, top]; 1 when λ · E2E(1) ≤ 1.

    `e2e_s` maps batch sizes to E2E seconds, non-decreasing. The map n ↦ λ · E2E(n) is non-decreasing,
    so the least fixed point is the first crossing of n on a log grid over [1, top], refined by
    bisection. With no crossing below `top` the result is max(top, λ · E2E(top)) ≥ top: the search
    passes `top` = B, and an engine that would run more than B runs B (`operating_point`: full).
    """
    if top <= 1:
        return max(1.0, rate_per_s * float(e2e_s(np.array([1.0]))[0]))
    ns = np.geomspace(1.0, top, _GRID_POINTS)
    gap = rate_per_s * np.asarray(e2e_s(ns), float) - ns  # > 0: more arrive than run at n
    if gap[0] <= 0:
        return 1.0
    below = np.flatnonzero(gap <= 0)
    if below.size == 0:
        return max(top, rate_per_s * float(e2e_s(np.array([top]))[0]))
    lo, hi = float(ns[below[0] - 1]), float(ns[below[0]])
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if rate_per_s * float(e2e_s(np.array([mid]))[0]) - mid > 0:
            lo = mid
        else:
            hi = mid
    return hi


def operating_point(
    e2e_s: Callable[[np.ndarray], np.ndarray], rate_per_s: float, batch: float, top: float
) -> OperatingPoint:
    """The operating point of one replica with batch knob `batch` at `rate_per_s` arrivals (see module)."""
    free = free_concurrency(e2e_s, rate_per_s, top)
    n = min(float(batch), free)
    e2e_1 = float(e2e_s(np.array([1.0]))[0])
    idle = max(0.0, 1.0 / rate_per_s - e2e_1) if rate_per_s > 0 else 0.0
    return OperatingPoint(n, idle if n <= 1.0 else 0.0, free >= batch)


__all__ = [
    "DEFAULT_IDLE_POWER_UNC_W",
    "DEFAULT_IDLE_POWER_W",
    "OperatingPoint",
    "free_concurrency",
    "operating_point",
]

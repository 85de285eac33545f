"""Synthetic arrival times: Poisson and gamma (bursty) request processes.

A serving measurement needs arrival times when a trace has none (length lists) or when the load must
be set to a chosen rate. The generators here sample inter-arrival gaps exactly from their
distribution: no clipping and no rescaling, so the mean rate is the requested one in expectation
(vidur's generator clips gaps at 3x the mean and so adds about 5% load). Every generator takes an
explicit `rng: numpy.random.Generator`, never numpy's global state, so a seed reproduces a run.

The gamma process follows vLLM's benchmark (`vllm/benchmarks/serve.py`): gaps are
Gamma(shape = burstiness, scale = 1 / (rate x burstiness)), so the mean gap is 1 / rate whatever the
burstiness, and the coefficient of variation of the gaps is 1 / sqrt(burstiness). Burstiness 1 is a
Poisson process; below 1 is burstier, above 1 is more regular.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from llm_energy.errors import ConfigError

__all__ = ["gamma_arrivals", "poisson_arrivals"]


def _check(n: int, rate_per_s: float, burstiness: float = 1.0) -> None:
    """Raise ConfigError unless n ≥ 0 and rate and burstiness are finite and positive."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ConfigError(f"number of arrivals must be an integer ≥ 0, got {n!r}")
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ConfigError(f"arrival rate must be a finite number > 0 requests/s, got {rate_per_s!r}")
    if not (math.isfinite(burstiness) and burstiness > 0):
        raise ConfigError(f"burstiness must be a finite number > 0 (1 = Poisson), got {burstiness!r}")


def poisson_arrivals(n: int, rate_per_s: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Return `n` arrival times of a Poisson process of rate `rate_per_s`.

    Gaps are exponential with mean 1 / rate_per_s; the times are their cumulative sums, so the first
    request arrives after the first gap (not at 0).

    Args:
        n: Number of arrivals (≥ 0).
        rate_per_s: Mean arrival rate in requests per second (> 0).
        rng: Source of randomness; the same seed gives the same times.

    Returns:
        Non-decreasing float64 arrival times in seconds, shape (n,).

    Raises:
        ConfigError: If n < 0 or rate_per_s ≤ 0 or not finite.
    """
    _check(n, rate_per_s)
    gaps_s = rng.exponential(scale=1.0 / rate_per_s, size=int(n))
    return np.cumsum(gaps_s, dtype=np.float64)


def gamma_arrivals(
    n: int, rate_per_s: float, burstiness: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Return `n` arrival times whose gaps are gamma-distributed (vLLM's `--burstiness`).

    Gaps are Gamma(shape = burstiness, scale = 1 / (rate_per_s x burstiness)): the mean gap is
    1 / rate_per_s and the coefficient of variation is 1 / sqrt(burstiness). The times are the
    cumulative sums of the gaps, so the first request arrives after the first gap.

    Args:
        n: Number of arrivals (≥ 0).
        rate_per_s: Mean arrival rate in requests per second (> 0).
        burstiness: Gamma shape (> 0). 1 is a Poisson process, < 1 burstier, > 1 more regular.
        rng: Source of randomness; the same seed gives the same times.

    Returns:
        Non-decreasing float64 arrival times in seconds, shape (n,).

    Raises:
        ConfigError: If n < 0, or rate_per_s or burstiness is ≤ 0 or not finite.
    """
    _check(n, rate_per_s, burstiness)
    gaps_s = rng.gamma(shape=burstiness, scale=1.0 / (rate_per_s * burstiness), size=int(n))
    return np.cumsum(gaps_s, dtype=np.float64)

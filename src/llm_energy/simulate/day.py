"""A synthetic day of load from a one-hour trace: a diurnal rate curve, the hour's requests resampled.

The bundled Azure traces span one hour. A day is built by drawing arrivals from a non-homogeneous
Poisson process whose rate follows a diurnal curve around the hour's mean rate, and giving each arrival
the lengths of a request of the hour drawn at random (both from one seeded generator). The result is
labelled **synthetic**: the day's shape is the curve's, not a measured day's.

Built-in curves (DynamoLLM, Stojkovic et al., HPCA 2025, §III, a week of Azure LLM inference):
conversation peaks at 1.7× its mean and its valley is 3.3× below the peak; coding peaks at 2.8× its
mean with a valley 34.6× below the peak. The shape is a raised cosine with one peak (at `PEAK_HOUR`)
and one valley twelve hours away, r(t) = v + (p − v) · ((1 + cos θ) / 2)^k, with p, v and k solved so
that the mean is 1 and the two ratios hold. A curve file gives relative rates at evenly spaced times
of day (JSON list or {"hourly": [...]}, ≥ 2 values, normalised to mean 1, interpolated cyclically).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.workloads.traces import Trace

__all__ = ["DAY_CURVES", "PEAK_HOUR", "DayCurve", "day_curve", "synthetic_day"]

S_PER_DAY = 86400.0
PEAK_HOUR = 14.0
"""Hour of the built-in curves' peak (afternoon); the valley is twelve hours away."""

DAY_CURVES: dict[str, tuple[float, float]] = {"conversation": (1.7, 3.3), "coding": (2.8, 34.6)}
"""Built-in curve → (peak / mean, peak / valley), from DynamoLLM's week of Azure traces."""


@dataclass(frozen=True)
class DayCurve:
    """Relative arrival rate over a day (mean 1), sampled at `points` evenly spaced times."""

    name: str
    relative_rate: np.ndarray
    source: str

    def at(self, t_s: np.ndarray) -> np.ndarray:
        """Relative rate at times `t_s` (seconds from midnight, cyclic), linearly interpolated."""
        n = len(self.relative_rate)
        x = np.linspace(0.0, S_PER_DAY, n + 1)
        y = np.append(self.relative_rate, self.relative_rate[0])
        return np.asarray(np.interp(np.mod(t_s, S_PER_DAY), x, y), dtype=float)

    def peak_to_mean(self) -> float:
        """Peak / mean of the curve."""
        return float(self.relative_rate.max() / self.relative_rate.mean())

    def peak_to_valley(self) -> float:
        """Peak / valley of the curve."""
        return float(self.relative_rate.max() / self.relative_rate.min())


def _mean_power(k: float) -> float:
    """Mean over a cycle of ((1 + cos θ) / 2)^k = Γ(k + ½) / (√π Γ(k + 1))."""
    return math.exp(math.lgamma(k + 0.5) - math.lgamma(k + 1.0)) / math.sqrt(math.pi)


def _raised_cosine(peak_to_mean: float, peak_to_valley: float, points: int = 1440) -> np.ndarray:
    p = peak_to_mean
    v = p / peak_to_valley
    target = (1.0 - v) / (p - v)  # the mean of the shape term that makes the curve's mean 1
    lo, hi = 1e-6, 200.0
    for _ in range(200):  # _mean_power falls monotonically in k
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _mean_power(mid) > target else (lo, mid)
    k = 0.5 * (lo + hi)
    hours = np.arange(points) * 24.0 / points
    theta = 2 * np.pi * (hours - PEAK_HOUR) / 24.0
    curve = v + (p - v) * ((1 + np.cos(theta)) / 2) ** k
    return np.asarray(curve / curve.mean(), dtype=float)


def day_curve(spec: str) -> DayCurve:
    """A built-in curve by name (`conversation`, `coding`) or a curve file.

    Raises:
        ConfigError: neither a known name nor a readable curve file (named in the message).
    """
    if spec in DAY_CURVES:
        pm, pv = DAY_CURVES[spec]
        src = (
            f"DynamoLLM (HPCA 2025): peak/mean {pm:g}, peak/valley {pv:g}; "
            f"raised cosine, peak at {PEAK_HOUR:g}h"
        )
        return DayCurve(spec, _raised_cosine(pm, pv), src)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"unknown --day {spec!r}: not one of {', '.join(DAY_CURVES)} and not a curve file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--day {path}: not a JSON curve ({exc})") from None
    values = data.get("hourly") if isinstance(data, dict) else data
    if (
        not isinstance(values, list)
        or len(values) < 2
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)
    ):
        raise ConfigError(f'--day {path}: expected a list of ≥ 2 relative rates (or {{"hourly": [...]}})')
    arr = np.asarray(values, float)
    if not np.isfinite(arr).all() or (arr < 0).any() or arr.sum() <= 0:
        raise ConfigError(f"--day {path}: rates must be finite, ≥ 0 and not all 0")
    return DayCurve(path.stem, arr / arr.mean(), str(path))


def synthetic_day(
    hour: Trace, curve: DayCurve, rng: np.random.Generator, *, mean_rate_per_s: float | None = None
) -> Trace:
    """A day of arrivals at `curve` × the hour's mean rate, each with a random request of `hour`'s lengths.

    Arrivals: a unit-rate Poisson process mapped through the inverse of the cumulative rate (exact
    for a piecewise-linear rate up to the grid of 1-second steps used to invert it).

    Raises:
        ConfigError: the hour has no arrival times or no duration.
    """
    if mean_rate_per_s is None:
        rate = hour.summary().rate_per_s
        if rate is None:
            raise ConfigError(f"trace {hour.name}: no arrival rate (times missing or all at once)")
        mean_rate_per_s = rate
    grid = np.arange(0.0, S_PER_DAY + 1.0, 1.0)
    cumulative = np.concatenate([[0.0], np.cumsum(curve.at(grid[:-1] + 0.5))]) * mean_rate_per_s
    total = cumulative[-1]
    n = int(rng.poisson(total))
    units = np.sort(rng.uniform(0.0, total, size=n))
    arrival_s = np.interp(units, cumulative, grid)
    pick = rng.integers(0, len(hour), size=n)
    name = f"{hour.name}-day-{curve.name}"
    return Trace(
        name, hour.input_tokens[pick], hour.output_tokens[pick], arrival_s, f"synthetic: {hour.source}"
    )

"""Latency SLOs: the bounds a workload's requests must meet, parsed from `ttft=2s,tpot=100ms,e2e=30s`.

An SLO belongs to the workload (what its users require), so everything that scores against one — the
load generator, the simulator, the recommender, the report — reads it from here.
"""

from __future__ import annotations

import math
import re

from llm_energy.errors import ConfigError

__all__ = ["SLO_METRICS", "parse_slo"]

SLO_METRICS: tuple[str, ...] = ("ttft", "tpot", "e2e")
"""Metrics an SLO may bound: time to first token, time per output token, end-to-end latency."""

_SLO_PART = re.compile(r"^\s*([a-z0-9_]+)\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)\s*$")
_S_PER_UNIT = {"s": 1.0, "ms": 1e-3}


def parse_slo(spec: str) -> dict[str, float]:
    """Parse an SLO spec such as `ttft=2s,tpot=100ms,e2e=30s` into bounds in seconds.

    Each comma-separated part is `metric=<number><unit>`, metric one of `SLO_METRICS` and unit `s`
    or `ms` (a unit is required). An empty spec means no SLO.

    Returns:
        Metric name → bound in seconds, e.g. `{"ttft": 2.0, "tpot": 0.1, "e2e": 30.0}`.

    Raises:
        ConfigError: Naming the offending part: malformed, unknown metric, missing unit, a bound
            that is not > 0, or a metric given twice.
    """
    slo_s: dict[str, float] = {}
    if not spec.strip():
        return slo_s
    for part in spec.split(","):
        match = _SLO_PART.match(part)
        if match is None:
            raise ConfigError(
                f"bad SLO part {part.strip()!r} in {spec!r}: expected metric=<number><s|ms>, e.g. ttft=2s"
            )
        metric, number, unit = match.groups()
        if metric not in SLO_METRICS:
            raise ConfigError(
                f"bad SLO part {part.strip()!r}: unknown metric {metric!r}; expected one of "
                f"{', '.join(SLO_METRICS)}"
            )
        if metric in slo_s:
            raise ConfigError(f"bad SLO part {part.strip()!r}: {metric} is given twice in {spec!r}")
        bound_s = float(number) * _S_PER_UNIT[unit]
        if not (math.isfinite(bound_s) and bound_s > 0):
            raise ConfigError(f"bad SLO part {part.strip()!r}: the bound must be > 0")
        slo_s[metric] = bound_s
    return slo_s

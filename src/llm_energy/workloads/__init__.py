"""What to run: real request traces and synthetic arrival processes.

`load_trace` / `iter_trace_chunks` read Azure, Mooncake, length-list or any CSV/JSONL/Parquet trace into
columnar `Trace`s; `poisson_arrivals` / `gamma_arrivals` make arrival times from an explicit numpy
`Generator`; `parse_slo` reads a latency SLO. Importing this package loads neither pandas nor torch;
pandas loads on the first read.
"""

from __future__ import annotations

from llm_energy.workloads.arrivals import gamma_arrivals, poisson_arrivals
from llm_energy.workloads.slo import SLO_METRICS, parse_slo
from llm_energy.workloads.traces import (
    BUNDLED_TRACES,
    TokenStats,
    Trace,
    TraceSummary,
    iter_trace_chunks,
    load_trace,
)

__all__ = [
    "BUNDLED_TRACES",
    "SLO_METRICS",
    "TokenStats",
    "Trace",
    "TraceSummary",
    "gamma_arrivals",
    "iter_trace_chunks",
    "load_trace",
    "parse_slo",
    "poisson_arrivals",
]

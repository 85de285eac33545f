"""Discrete-event simulation of a cluster serving a trace (SimPy), driven by the fitted physical model.

`simulate(SimConfig(...))` replays a trace's arrivals (or a synthetic day of them) against pools of
simulated vLLM-like instances — continuous batching step by step, chunked prefill, KV-cache admission and
preemption, idle power between work — under a control policy (`POLICIES`: single, per-class, dynamic, or a
JSON plan), and reports what `replay` reports (per-request TTFT/TPOT/E2E, SLO attainment, goodput,
steady-state J/request) plus the fleet's total, idle and dynamic energy, GPU-hours, carbon and cost.
Every figure is simulated; clocks are modelled (DVFS), TP > 1 assumed, a day synthetic (see the labels).
"""

from __future__ import annotations

from llm_energy.simulate.costs import RECONFIG_COSTS, InstanceConfig, PassCosts, ReconfigCosts, TpModel
from llm_energy.simulate.day import DAY_CURVES, DayCurve, day_curve, synthetic_day
from llm_energy.simulate.policies import POLICIES, PoolPlan, make_policy, split_classes
from llm_energy.simulate.results import SimResult, records_of
from llm_energy.simulate.run import SimConfig, simulate

__all__ = [
    "DAY_CURVES",
    "POLICIES",
    "RECONFIG_COSTS",
    "DayCurve",
    "InstanceConfig",
    "PassCosts",
    "PoolPlan",
    "ReconfigCosts",
    "SimConfig",
    "SimResult",
    "TpModel",
    "day_curve",
    "make_policy",
    "records_of",
    "simulate",
    "split_classes",
    "synthetic_day",
]

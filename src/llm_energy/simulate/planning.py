"""A steady-state model of one instance at a load, for the policies to choose clocks and pool sizes.

The simulator itself steps every iteration; a policy choosing a configuration needs a quick answer
instead: at arrival rate λ of requests with mean input L_in and output L_out, what TTFT, TPOT,
utilisation and power does a configuration give? The answer (`predict`) uses the same pass costs:

* prefill occupies u_p = λ · t_prefill(L_in) of the time (chunked as the engine chunks it);
* decode runs the batch B that Little's law gives, B = λ · (L_out − 1) · TPOT, where a decode step is
  stretched by the prefill work interleaved with it: TPOT = t_step(B) / (1 − u_p) (a fixed point);
* TTFT ≈ (t_prefill + t_step) / (1 − u_p); power = λ·E_prefill + decode steps/s · E_step + idle power ·
  the time neither runs.

A configuration is feasible when prefill takes at most `MAX_PREFILL_SHARE` of the time, the batch fits
max_num_seqs and the KV cache, and the predicted TTFT and TPOT are within `HEADROOM` of the SLO (with
continuous batching decode is never "full": a heavier load grows the batch and so the TPOT, which the
SLO bounds). This is a planning estimate,
never a result: results come from the simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from llm_energy.simulate.costs import InstanceConfig, PassCosts

__all__ = ["HEADROOM", "MAX_PREFILL_SHARE", "Load", "Prediction", "best_clock", "predict", "prefill_cost"]

HEADROOM = 0.8
"""Plan for TTFT and TPOT at most this share of the SLO."""
MAX_PREFILL_SHARE = 0.6
"""Plan for prefill taking at most this share of the time (queueing grows fast beyond; bursts)."""


@dataclass(frozen=True)
class Load:
    """Requests arriving at one instance: rate (req/s) and mean lengths (tokens)."""

    rate_per_s: float
    input_tokens: float
    output_tokens: float


@dataclass(frozen=True)
class Prediction:
    """Steady-state prediction of one instance at a load (seconds, watts)."""

    feasible: bool
    ttft_s: float
    tpot_s: float
    utilisation: float
    power_w: float
    batch: float


def prefill_cost(costs: PassCosts, tokens: float) -> tuple[float, float]:
    """(s, J) of prefilling one prompt of `tokens` tokens alone, in engine-sized chunks."""
    chunk = max(int(costs.model.prefill_chunk_tokens), 1)
    time_s = energy_j = 0.0
    done = 0.0
    while done < tokens:
        n = min(chunk, tokens - done)
        t, e = costs.prefill(n, n * done + n * (n + 1) / 2)
        time_s, energy_j, done = time_s + t, energy_j + e, done + n
    return time_s, energy_j


def predict(costs: PassCosts, load: Load, slo_s: Mapping[str, float]) -> Prediction:
    """Predict TTFT, TPOT, utilisation and power of `costs` at `load` (see the module docstring)."""
    lam, lin, lout = load.rate_per_s, max(load.input_tokens, 1.0), max(load.output_tokens, 1.0)
    pre_t, pre_e = prefill_cost(costs, lin)
    u_p = lam * pre_t
    if u_p >= MAX_PREFILL_SHARE:
        return Prediction(False, math.inf, math.inf, u_p, math.inf, math.inf)
    batch = 1.0
    step_t = step_e = tpot = 0.0
    for _ in range(50):
        step_t, step_e, _, _ = costs.decode_line(max(batch, 1.0), max(batch, 1.0) * (lin + lout / 2))  # type: ignore[arg-type]
        tpot = step_t / (1.0 - u_p)
        new = lam * (lout - 1.0) * tpot
        if abs(new - batch) <= 1e-3 * max(batch, 1.0):
            batch = new
            break
        batch = new
        if batch > 1e5:
            break
    steps_per_s = lam * (lout - 1.0) / max(batch, 1.0)
    u_d = steps_per_s * step_t
    util = min(u_p + u_d, 1.0)
    ttft = (pre_t + step_t) / (1.0 - u_p)
    power = lam * pre_e + steps_per_s * step_e + costs.idle_power_w * (1.0 - util)
    feasible = (
        batch <= costs.max_num_seqs
        and batch * (lin + lout) <= costs.kv_capacity_tokens
        and ttft <= HEADROOM * slo_s.get("ttft", math.inf)
        and tpot <= HEADROOM * slo_s.get("tpot", math.inf)
        and ttft + (lout - 1) * tpot <= HEADROOM * slo_s.get("e2e", math.inf)
    )
    return Prediction(feasible, ttft, tpot, util, power, batch)


def best_clock(
    costs_of: Callable[[InstanceConfig], PassCosts],
    config: InstanceConfig,
    clocks_mhz: Sequence[float],
    load: Load,
    slo_s: Mapping[str, float],
) -> tuple[float, Prediction]:
    """The clock of least predicted power among the feasible ones at `load`; the highest when none is."""
    best: tuple[float, Prediction] | None = None
    for clock in sorted(clocks_mhz, reverse=True):
        p = predict(costs_of(InstanceConfig(config.tp, clock, config.max_num_seqs)), load, slo_s)
        if p.feasible and (best is None or p.power_w < best[1].power_w):
            best = (clock, p)
    if best is None:
        top = max(clocks_mhz)
        return top, predict(costs_of(InstanceConfig(config.tp, top, config.max_num_seqs)), load, slo_s)
    return best

"""`simulate`: a trace (or a synthetic day of it) served by a simulated cluster under a policy.

One call: load the profile's physical model and the trace, build the arrivals (window, synthetic day,
time scale), split the requests into input-length classes, let the policy lay out the pools, run the
SimPy cluster until every request has finished, then summarise as `replay` does. Every figure is
simulated from the fitted model; clock effects are `modelled` (DVFS), TP > 1 is `assumed`, a day is
`synthetic` — the result's labels say which apply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from llm_energy.carbon import Footprint, GridIntensity, check_price, parse_carbon_intensity
from llm_energy.errors import ConfigError
from llm_energy.meters.gpus import max_sm_clock_mhz
from llm_energy.modeling.profile import DEFAULT_PROFILE, load_profile
from llm_energy.simulate.cluster import Cluster
from llm_energy.simulate.costs import RECONFIG_COSTS, TpModel
from llm_energy.simulate.day import day_curve, synthetic_day
from llm_energy.simulate.instance import RequestTable
from llm_energy.simulate.policies import PlanContext, make_policy, peak_rates, split_classes
from llm_energy.simulate.results import (
    SimResult,
    energy_totals,
    reconfiguration_counts,
    steady_window,
    summarise_table,
    timeline,
    window_energy,
)
from llm_energy.workloads.traces import Trace, load_trace

__all__ = ["SimConfig", "simulate"]


@dataclass(frozen=True)
class SimConfig:
    """What to simulate.

    Attributes:
        trace: Bundled trace name or trace file (lengths and arrival times).
        profile: Bundled profile name or profile file (its physical model drives every pass).
        gpus: GPUs in the cluster.
        policy: `single`, `per-class`, `dynamic` or a JSON plan file.
        time_scale: Arrivals this many times faster (2 = twice the rate).
        day: Build a synthetic day from the trace with this curve (`conversation`, `coding`, a file).
        window: (start_s, duration_s) of the trace (its own seconds) to serve; None: all of it.
        slo_s: SLO bounds in seconds (`ttft`, `tpot`, `e2e`).
        max_num_seqs: Sequences per instance; None: the profile's.
        seed: Seed of the synthetic day.
        carbon_intensity: gCO2/kWh or a region name; None: no carbon figures.
        price_per_kwh: Electricity price; None: no cost figures.
        parked_power_w: Power of a GPU no instance holds (0: released or powered down).
    """

    trace: str = "azure-conv"
    profile: str = DEFAULT_PROFILE
    gpus: int = 8
    policy: str = "single"
    time_scale: float = 1.0
    day: str | None = None
    window: tuple[float, float] | None = None
    slo_s: dict[str, float] = field(default_factory=lambda: {"ttft": 2.0, "tpot": 0.1})
    max_num_seqs: int | None = None
    seed: int = 0
    carbon_intensity: str | None = None
    price_per_kwh: float | None = None
    parked_power_w: float = 0.0


def _arrivals(cfg: SimConfig) -> tuple[Trace, Trace, list[str]]:
    """(the base trace, the arrivals to serve, labels) for `cfg`."""
    if not (math.isfinite(cfg.time_scale) and cfg.time_scale > 0):
        raise ConfigError(f"--time-scale must be a finite number > 0, got {cfg.time_scale}")
    base = load_trace(cfg.trace)
    if base.arrival_s is None:
        raise ConfigError(f"trace {cfg.trace}: no arrival times to simulate (give a trace with times)")
    labels = ["simulated", "modelled"]
    served = base
    if cfg.window is not None:
        served = base.window(*cfg.window)
        if not len(served):
            raise ConfigError(f"trace {cfg.trace}: no request arrives in window {cfg.window}")
    if cfg.day is not None:
        curve = day_curve(cfg.day)
        served = synthetic_day(served, curve, np.random.default_rng(cfg.seed))
        labels.append(f"synthetic day ({curve.name}: {curve.source})")
    return base, served.scale_time(cfg.time_scale), labels


def simulate(cfg: SimConfig, on_progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Simulate `cfg` (see `SimConfig`) and return its per-request summary and fleet energy.

    Raises:
        ConfigError: a bad input (profile, trace, policy, day curve, GPUs, price, carbon intensity).
    """
    if cfg.gpus < 1:
        raise ConfigError(f"--gpus must be ≥ 1, got {cfg.gpus}")
    price = check_price(cfg.price_per_kwh)
    grid = parse_carbon_intensity(cfg.carbon_intensity)
    profile = load_profile(cfg.profile)
    model = profile.physical
    if model is None:
        raise ConfigError(f"profile {cfg.profile}: has no physical model to simulate with (refit it)")
    notes: list[str] = []
    try:
        max_clock = max_sm_clock_mhz(profile.gpu_name)
    except ConfigError:
        max_clock = 1980.0
        notes.append(f"maximum SM clock of {profile.gpu_name!r} unknown: 1980 MHz assumed")
    policy = make_policy(cfg.policy)
    base, served, labels = _arrivals(cfg)
    thresholds, _ = split_classes(base.input_tokens)
    klass = np.searchsorted(np.asarray(thresholds), served.input_tokens, side="left").astype(np.int64)
    assert served.arrival_s is not None
    table = RequestTable(served.arrival_s, served.input_tokens, served.output_tokens, klass)
    seqs = cfg.max_num_seqs or model.max_num_seqs or 256
    tp_model = _tp_model(profile.model)
    cluster = Cluster(
        model, max_clock, table, cfg.gpus, default_max_num_seqs=seqs, tp_model=tp_model,
        parked_power_w=cfg.parked_power_w,
    )  # fmt: skip
    ctx = _context(cfg, cluster, table)
    pools = policy.plan(ctx)
    need = sum(p.instances * p.config.tp for p in pools)
    if need > cfg.gpus:
        raise ConfigError(f"--policy {cfg.policy}: the plan needs {need} GPUs, --gpus is {cfg.gpus}")
    for p in pools:
        for c in p.classes:
            cluster.pool_of_class[c] = p.name
        for _ in range(p.instances):
            cluster.add_instance(p.name, p.config, cold=False)
    for proc in policy.controllers(cluster, ctx):
        cluster.env.process(proc)
    cluster.on_progress = on_progress
    wall = time.perf_counter()
    end = cluster.run()
    wall = time.perf_counter() - wall
    return _result(cfg, cluster, table, end, wall, [p.describe() for p in pools], labels, notes, grid, price)


def _tp_model(model_name: str) -> TpModel:
    """The assumed TP model with the architecture's layers and hidden size where it is bundled."""
    from llm_energy.architectures import load_architecture

    try:
        arch = load_architecture(model_name)
    except ConfigError:
        return TpModel()
    return TpModel(
        layers=arch.num_layers, allreduce_bytes_per_token=2 * arch.num_layers * arch.hidden_size * 2.0
    )


def _context(cfg: SimConfig, cluster: Cluster, table: RequestTable) -> PlanContext:
    first = table.arrival_s < 300.0
    mean_in, mean_out = [], []
    for c in range(3):
        sel = table.klass == c
        mean_in.append(float(table.input_tokens[sel].mean()) if sel.any() else 1.0)
        mean_out.append(float(table.output_tokens[sel].mean()) if sel.any() else 1.0)
    return PlanContext(
        gpus=cfg.gpus, slo_s=cfg.slo_s, peak_rate_per_s=peak_rates(table.arrival_s, table.klass),
        mean_input=(mean_in[0], mean_in[1], mean_in[2]), mean_output=(mean_out[0], mean_out[1], mean_out[2]),
        costs_of=cluster.costs_of, max_clock_mhz=cluster.max_clock_mhz,
        first_rate_per_s=peak_rates(table.arrival_s[first], table.klass[first]),
    )  # fmt: skip


def _result(
    cfg: SimConfig, cluster: Cluster, table: RequestTable, end: float, wall: float, plan: list[str],
    labels: list[str], notes: list[str], grid: GridIntensity | None, price: float | None,
) -> SimResult:  # fmt: skip
    try:
        window = steady_window(table)
    except ConfigError as exc:  # too few requests for a steady state: the whole run, said so
        window = (float(table.arrival_s.min()), max(end, float(table.arrival_s.min()) + 1e-9))
        notes.append(f"{exc}: summary and window energy over the whole run instead")
    idle_w = cluster.model.idle_power_w
    totals = energy_totals(
        table, cluster.segments, end, cluster.gpus, idle_w, cluster.parked_power_w, grid, price
    )
    span = max(end, 1e-9)
    rate = len(table) / span
    footprint = Footprint(totals.j_per_request, rate, None if grid is None else grid.g_per_kwh, price)
    used = {(i.costs.tp, i.costs.clock_mhz) for i in cluster.instances}
    if any(tp > 1 for tp, _ in used):
        labels.append(f"assumed ({cluster.tp_model.describe()})")
    if any(c < cluster.max_clock_mhz for _, c in used) or any("clock" in w for _, w in cluster.events):
        labels.append("clocks modelled (control.dvfs: prefill compute-bound, decode memory-bound)")
    counts = np.bincount(table.instance[table.instance >= 0], minlength=len(cluster.instances))
    return SimResult(
        summary=summarise_table(table, cluster.segments, cfg.slo_s, window),
        energy=window_energy(table, cluster.segments, window, idle_w),
        totals=totals, footprint=footprint,
        config={
            "trace": cfg.trace, "profile": cfg.profile, "gpus": cfg.gpus, "policy": cfg.policy,
            "time_scale": cfg.time_scale, "day": cfg.day, "window": cfg.window, "slo_s": cfg.slo_s,
            "max_num_seqs": cfg.max_num_seqs, "seed": cfg.seed, "parked_power_w": cfg.parked_power_w,
            "max_clock_mhz": cluster.max_clock_mhz, "reconfiguration_costs_s": RECONFIG_COSTS.__dict__,
        },
        plan=plan, reconfigurations=reconfiguration_counts(cluster.events),
        instance_requests=[int(x) for x in counts], preemptions=int(table.preemptions.sum()),
        timeline=timeline(cluster.segments, end, 3600.0 if end > 7200 else 60.0),
        labels=labels, notes=notes, wall_s=wall, table=table,
    )  # fmt: skip

"""Control policies: which pools of which instances serve the trace, and how they change (one registry).

* `single` — the seed's baseline: one pool for every request, the largest TP (≤ 8 and ≤ the GPUs),
  the maximum clock, every GPU on all the time (sized for the peak).
* `per-class` — static pools by input-length class (short / medium / long at the trace's 33rd and 66th
  percentiles, the rule of `recommend.classes`; the output class is not known on arrival), TP 1 at
  the maximum clock; each pool sized once for its class's peak rate, then every GPU spread over the
  pools in proportion (all on all day).
* `dynamic` — DynamoLLM's manner (Stojkovic et al., HPCA 2025): the per-class pools, then every
  `clock_period_s` each instance takes the least-power clock that meets the SLO at its current load
  (`planning.best_clock`), and every `scale_period_s` each pool takes the instance count and TP of
  least predicted power at its recent peak rate (× `SCALE_HEADROOM`), starting (minutes) or draining
  instances and re-sharding them (`costs.RECONFIG_COSTS`). The SLO is watched too, as DynamoLLM's
  instance managers do: an instance whose requests finished in the last period missed the SLO runs at
  the maximum clock for `hot_s`, and a pool that missed it in the last minute is sized for more load.
* a JSON plan file — pools with their classes, instance count and configuration, held fixed:
  ``{"pools": [{"name": "short", "classes": ["short"], "instances": 3, "tp": 1, "clock_mhz": 1380}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import simpy

from llm_energy.errors import ConfigError
from llm_energy.simulate.cluster import Cluster
from llm_energy.simulate.costs import InstanceConfig
from llm_energy.simulate.planning import Load, best_clock, predict

__all__ = [
    "CLASS_NAMES",
    "POLICIES",
    "PlanContext",
    "Policy",
    "PoolPlan",
    "make_policy",
    "split_classes",
]

CLASS_NAMES = ("short", "medium", "long")
CLOCKS_MHZ = (1980.0, 1830.0, 1680.0, 1530.0, 1380.0, 1230.0, 1080.0, 930.0, 780.0)
"""SM clocks the policies choose from (H100/H200 SXM: 1980 MHz maximum; DVFS model below 780 MHz untested)."""
SCALE_HEADROOM = 1.25
"""Pools are sized for their recent peak rate × this (arrivals keep rising while instances start)."""


def split_classes(input_tokens: np.ndarray) -> tuple[tuple[float, float], np.ndarray]:
    """Input-length thresholds (p33, p66) and each request's class 0/1/2 (short/medium/long)."""
    lin = np.asarray(input_tokens, float)
    lo, hi = (float(x) for x in np.percentile(lin, [33, 66]))
    return (lo, hi), np.searchsorted(np.asarray([lo, hi]), lin, side="left").astype(np.int64)


@dataclass(frozen=True)
class PoolPlan:
    """One pool: the classes it serves, how many instances, and their configuration."""

    name: str
    classes: tuple[int, ...]
    instances: int
    config: InstanceConfig

    def describe(self) -> str:
        """E.g. `short: 3 × TP1 @1380 MHz`."""
        return f"{self.name}: {self.instances} × {self.config.label()}"


@dataclass(frozen=True)
class PlanContext:
    """What a policy plans from.

    Attributes:
        gpus: GPUs in the cluster.
        slo_s: SLO bounds (s) by metric.
        peak_rate_per_s: Peak arrival rate of each class (busiest minute), req/s.
        mean_input: Mean input tokens of each class.
        mean_output: Mean output tokens of each class (known to the simulator; a real system predicts it).
        costs_of: Pass costs of a configuration.
        max_clock_mhz: The GPU's maximum SM clock.
        first_rate_per_s: Busiest-minute rate of each class in the first scaling period (req/s).
    """

    gpus: int
    slo_s: Mapping[str, float]
    peak_rate_per_s: tuple[float, float, float]
    mean_input: tuple[float, float, float]
    mean_output: tuple[float, float, float]
    costs_of: Callable[[InstanceConfig], Any]
    max_clock_mhz: float
    first_rate_per_s: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def load(self, classes: tuple[int, ...], rate_per_s: float) -> Load:
        """Load of a pool serving `classes` at `rate_per_s`, lengths weighted by the classes' peak rates."""
        w = np.asarray([self.peak_rate_per_s[c] for c in classes]) + 1e-12
        lin = float(np.average([self.mean_input[c] for c in classes], weights=w))
        lout = float(np.average([self.mean_output[c] for c in classes], weights=w))
        return Load(rate_per_s, lin, lout)


class Policy(Protocol):
    """A control policy: an initial plan, and processes that change it while the simulation runs."""

    name: ClassVar[str]

    def plan(self, ctx: PlanContext) -> list[PoolPlan]:
        """Pools to start with (their GPUs sum to at most ctx.gpus)."""
        ...

    def controllers(self, cluster: Cluster, ctx: PlanContext) -> list[Generator[simpy.Event, Any, None]]:
        """SimPy processes that reconfigure the cluster (none for a static policy)."""
        ...


class SinglePolicy:
    """One pool, the largest TP, the maximum clock, every GPU on (the seed's baseline)."""

    name: ClassVar[str] = "single"

    def plan(self, ctx: PlanContext) -> list[PoolPlan]:
        """Every GPU in instances of the largest TP that fits."""
        tp = next(t for t in (8, 4, 2, 1) if t <= ctx.gpus)
        return [PoolPlan("all", (0, 1, 2), ctx.gpus // tp, InstanceConfig(tp=tp))]

    def controllers(self, cluster: Cluster, ctx: PlanContext) -> list[Generator[simpy.Event, Any, None]]:
        """None: static."""
        return []


def _instances_for(ctx: PlanContext, classes: tuple[int, ...], rate: float, config: InstanceConfig) -> int:
    """Fewest instances of `config` whose per-instance load is feasible at `rate` (≥ 1)."""
    for n in range(1, ctx.gpus // config.tp + 1):
        if predict(ctx.costs_of(config), ctx.load(classes, rate / n), ctx.slo_s).feasible:
            return n
    return max(ctx.gpus // config.tp, 1)


def _spread(need: list[int], gpus: int) -> list[int]:
    """Give every pool ≥ 1 GPU and spread `gpus` in proportion to `need` (largest remainder)."""
    if gpus < len(need):
        raise ConfigError(f"{len(need)} pools need at least {len(need)} GPUs, --gpus is {gpus}")
    share = np.asarray(need, float) / max(sum(need), 1) * gpus
    out = np.maximum(np.floor(share).astype(int), 1)
    while out.sum() > gpus:
        out[int(np.argmax(out))] -= 1
    for i in np.argsort(-(share - np.floor(share))):
        if out.sum() >= gpus:
            break
        out[i] += 1
    return [int(x) for x in out]


class PerClassPolicy:
    """Static pools per input class, sized for each class's peak, clocks chosen once."""

    name: ClassVar[str] = "per-class"

    def plan(self, ctx: PlanContext) -> list[PoolPlan]:
        """Pools short / medium / long of TP 1, all GPUs spread by each class's peak need."""
        classes = [c for c in range(3) if ctx.peak_rate_per_s[c] > 0]
        need = [_instances_for(ctx, (c,), ctx.peak_rate_per_s[c], InstanceConfig()) for c in classes]
        spread = _spread(need, ctx.gpus)
        return [
            PoolPlan(CLASS_NAMES[c], (c,), n, InstanceConfig()) for c, n in zip(classes, spread, strict=True)
        ]

    def controllers(self, cluster: Cluster, ctx: PlanContext) -> list[Generator[simpy.Event, Any, None]]:
        """None: static."""
        return []


@dataclass
class DynamicPolicy:
    """DynamoLLM-style control: per-instance clocks every few seconds, per-pool size and TP every minutes."""

    name: ClassVar[str] = "dynamic"
    clock_period_s: float = 5.0
    scale_period_s: float = 300.0
    rate_window_s: float = 60.0
    hot_s: float = 60.0
    _classes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _planned: dict[str, float] = field(default_factory=dict)
    _hot_until: dict[int, float] = field(default_factory=dict)
    _missed: dict[str, int] = field(default_factory=dict)

    def plan(self, ctx: PlanContext) -> list[PoolPlan]:
        """The per-class pools, each sized for its busiest minute of the first scaling period."""
        pools = []
        avail = ctx.gpus
        for c in range(3):
            if ctx.peak_rate_per_s[c] <= 0:
                continue
            name = CLASS_NAMES[c]
            self._classes[name] = (c,)
            rate = ctx.first_rate_per_s[c] * SCALE_HEADROOM
            tp, n = _choose(ctx, (c,), rate, avail - (2 - c))
            self._planned[name] = rate
            avail -= n * tp
            pools.append(PoolPlan(name, (c,), n, InstanceConfig(tp=tp)))
        return pools

    def controllers(self, cluster: Cluster, ctx: PlanContext) -> list[Generator[simpy.Event, Any, None]]:
        """The clock loop and the scaling loop."""
        return [self._clocks(cluster, ctx), self._scale(cluster, ctx)]

    def _clocks(self, cluster: Cluster, ctx: PlanContext) -> Generator[simpy.Event, Any, None]:
        """Every clock period: each instance's least-power clock at its recent rate (max clock if queued)."""
        seen: dict[int, int] = {}
        rate: dict[int, float] = {}
        alpha = min(1.0, self.clock_period_s / (self.rate_window_s / 2))
        while True:
            yield cluster.env.timeout(self.clock_period_s)
            for inst in cluster.instances:
                if inst.state not in ("active", "draining"):
                    continue
                now_rate = (inst.arrivals - seen.get(inst.index, 0)) / self.clock_period_s
                seen[inst.index] = inst.arrivals
                ewma = (1 - alpha) * rate.get(inst.index, now_rate) + alpha * now_rate
                rate[inst.index] = ewma
                if _missed_slo(cluster, inst, ctx.slo_s):
                    self._hot_until[inst.index] = cluster.env.now + self.hot_s
                    self._missed[inst.pool] = self._missed.get(inst.pool, 0) + 1
                if inst.waiting or self._hot_until.get(inst.index, -1.0) > cluster.env.now:
                    clock = ctx.max_clock_mhz
                else:
                    load = ctx.load(self._classes[inst.pool], max(ewma, now_rate))
                    clock, _ = best_clock(ctx.costs_of, inst.config, CLOCKS_MHZ, load, ctx.slo_s)
                if abs(clock - inst.costs.clock_mhz) > 1e-6:
                    cluster.set_clock(inst, clock)

    def _scale(self, cluster: Cluster, ctx: PlanContext) -> Generator[simpy.Event, Any, None]:
        """Every minute: note each pool's rate; scale up at once if it outgrew the plan, else every period."""
        last: dict[str, int] = {}
        minutes: dict[str, list[float]] = {pool: [] for pool in self._classes}
        per_period = max(round(self.scale_period_s / self.rate_window_s), 1)
        while True:
            yield cluster.env.timeout(self.rate_window_s)
            for pool, classes in self._classes.items():
                count = cluster.pool_arrivals.get(pool, 0)
                minutes[pool].append((count - last.get(pool, 0)) / self.rate_window_s)
                last[pool] = count
                recent = minutes[pool][-per_period:]
                if self._missed.pop(pool, 0):  # the SLO was missed: plan for more than was planned
                    self._resize(
                        cluster, ctx, pool, classes, 1.5 * max(self._planned.get(pool, 0.0), recent[-1])
                    )
                elif minutes[pool][-1] * SCALE_HEADROOM > self._planned.get(pool, 0.0):
                    self._resize(cluster, ctx, pool, classes, minutes[pool][-1] * SCALE_HEADROOM)
                elif len(minutes[pool]) % per_period == 0:
                    self._resize(cluster, ctx, pool, classes, max(recent) * SCALE_HEADROOM)

    def _resize(
        self, cluster: Cluster, ctx: PlanContext, pool: str, classes: tuple[int, ...], rate: float
    ) -> None:
        """Set `pool`'s instance count and TP for `rate` (least predicted power that is feasible)."""
        serving = cluster.pool(pool, serving_only=True)
        avail = cluster.gpus_free + sum(i.costs.tp for i in serving)
        tp, n = _choose(ctx, classes, rate, avail)
        self._planned[pool] = rate
        for inst in serving:
            if inst.costs.tp != tp:
                cluster.reshard(inst, tp)
        serving = sorted(
            cluster.pool(pool, serving_only=True), key=lambda i: (i.state != "starting", i.outstanding)
        )
        for inst in serving[: max(len(serving) - n, 0)]:
            cluster.drain(inst)
        for _ in range(n - len(serving)):
            if cluster.gpus_free < tp:
                break
            cluster.add_instance(pool, InstanceConfig(tp=tp))


def _missed_slo(cluster: Cluster, inst: Any, slo_s: Mapping[str, float]) -> bool:
    """Whether a request `inst` finished since the last look missed the SLO (the list is cleared)."""
    if not inst.finished:
        return False
    t = cluster.table
    ids = np.asarray(inst.finished)
    inst.finished.clear()
    ttft = t.first_s[ids] - t.arrival_s[ids]
    e2e = t.done_s[ids] - t.arrival_s[ids]
    tpot = (e2e - ttft) / np.maximum(t.output_tokens[ids] - 1, 1)
    bad = (
        (ttft > slo_s.get("ttft", np.inf))
        | (tpot > slo_s.get("tpot", np.inf))
        | (e2e > slo_s.get("e2e", np.inf))
    )
    return bool(bad.any())


def _choose(ctx: PlanContext, classes: tuple[int, ...], rate: float, gpus: int) -> tuple[int, int]:
    """(TP, instances) of least predicted power feasible at `rate` within `gpus` (fallback: all TP 1)."""
    best: tuple[float, int, int] | None = None
    gpus = max(gpus, 1)
    for tp in (1, 2, 4, 8):
        for n in range(1, gpus // tp + 1):
            load = ctx.load(classes, rate / n)
            _, p = best_clock(ctx.costs_of, InstanceConfig(tp=tp), CLOCKS_MHZ, load, ctx.slo_s)
            if p.feasible:
                if best is None or n * p.power_w < best[0]:
                    best = (n * p.power_w, tp, n)
                break
    return (best[1], best[2]) if best is not None else (1, gpus)


@dataclass
class FilePolicy:
    """A fixed plan read from a JSON file."""

    pools: list[PoolPlan]
    name: ClassVar[str] = "file"

    @classmethod
    def read(cls, path: Path) -> FilePolicy:
        """Read a plan file (see the module docstring).

        Raises:
            ConfigError: unreadable, not JSON, or a pool with a bad field (named).
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"--policy {path}: not a readable JSON plan ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("pools"), list) or not data["pools"]:
            raise ConfigError(f'--policy {path}: expected {{"pools": [...]}} with at least one pool')
        pools = [_pool_of(path, i, p) for i, p in enumerate(data["pools"])]
        served = sorted(c for p in pools for c in p.classes)
        if served != [0, 1, 2]:
            raise ConfigError(f"--policy {path}: the pools must serve short, medium and long once each")
        return cls(pools)

    def plan(self, ctx: PlanContext) -> list[PoolPlan]:
        """The file's pools."""
        return self.pools

    def controllers(self, cluster: Cluster, ctx: PlanContext) -> list[Generator[simpy.Event, Any, None]]:
        """None: static."""
        return []


def _pool_of(path: Path, i: int, p: Any) -> PoolPlan:
    where = f"--policy {path}: pool {i}"
    if not isinstance(p, dict):
        raise ConfigError(f"{where}: not an object")
    unknown = set(p) - {"name", "classes", "instances", "tp", "clock_mhz", "max_num_seqs"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    classes = p.get("classes", "all")
    names = list(CLASS_NAMES) if classes == "all" else classes
    if not isinstance(names, list) or not names or any(c not in CLASS_NAMES for c in names):
        raise ConfigError(f"{where}: classes must be 'all' or a list of short, medium, long")
    n = p.get("instances", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{where}: instances must be an integer ≥ 1, got {n!r}")
    try:
        config = InstanceConfig(int(p.get("tp", 1)), p.get("clock_mhz"), p.get("max_num_seqs"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    name = str(p.get("name", "+".join(names)))
    return PoolPlan(name, tuple(CLASS_NAMES.index(c) for c in names), n, config)


POLICIES: dict[str, Callable[[], Policy]] = {
    "single": SinglePolicy,
    "per-class": PerClassPolicy,
    "dynamic": DynamicPolicy,
}
"""Built-in policies by name; anything else given to `--policy` is read as a JSON plan file."""


def make_policy(spec: str) -> Policy:
    """The policy named `spec`, or the plan in file `spec`.

    Raises:
        ConfigError: neither a policy name nor a file (the names are listed), or a bad plan file.
    """
    if spec in POLICIES:
        return POLICIES[spec]()
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"unknown --policy {spec!r}: not one of {', '.join(POLICIES)} and not a JSON plan file"
        )
    return FilePolicy.read(path)


def peak_rates(
    arrival_s: np.ndarray, klass: np.ndarray, window_s: float = 60.0
) -> tuple[float, float, float]:
    """Each class's busiest `window_s` arrival rate (req/s), from arrival times."""
    out = []
    for c in range(3):
        t = arrival_s[klass == c]
        if not len(t):
            out.append(0.0)
            continue
        span = max(float(t[-1] - t[0]), window_s)
        counts = np.searchsorted(t, t + window_s, side="left") - np.arange(len(t))
        out.append(float(counts.max()) / window_s if span > window_s else len(t) / span)
    return (out[0], out[1], out[2])

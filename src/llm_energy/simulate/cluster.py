"""The simulated cluster: GPUs, pools of instances, the router and the arrival process (SimPy).

Requests arrive at their (scaled) trace times. The router sends each to its class's pool (a pool
serves one or more input-length classes; `single` has one pool for all) and, within the pool, to the
active instance with the fewest outstanding requests (ties: the lowest index). A request whose input
plus output tokens exceed an instance's KV cache can never run there: it fails at once (as a server
refuses a prompt longer than its context, HTTP 400).

GPUs not held by an instance are parked and draw `parked_power_w` (0 by default: released to other
work or powered down); the simulation ends when every request has finished or failed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from llm_energy.errors import ConfigError
from llm_energy.modeling.physical import PhysicalModel
from llm_energy.simulate.costs import RECONFIG_COSTS, InstanceConfig, PassCosts, ReconfigCosts, TpModel
from llm_energy.simulate.instance import Instance, RequestTable, Segments

__all__ = ["Cluster"]


class Cluster:
    """GPUs, pools and instances of one simulation, with the router.

    Attributes:
        env: The SimPy environment.
        table: Every request.
        segments: The energy log of every instance.
        gpus: GPUs in the cluster.
        instances: Every instance ever started (stopped ones included).
        pool_of_class: Input class (0 short, 1 medium, 2 long) → pool name.
        events: Reconfigurations, in order: (time_s, what).
    """

    def __init__(
        self,
        model: PhysicalModel,
        max_clock_mhz: float,
        table: RequestTable,
        gpus: int,
        *,
        default_max_num_seqs: int,
        tp_model: TpModel | None = None,
        reconfig: ReconfigCosts = RECONFIG_COSTS,
        parked_power_w: float = 0.0,
    ) -> None:
        self.env = simpy.Environment()
        self.model, self.max_clock_mhz, self.table, self.gpus = model, max_clock_mhz, table, gpus
        self.default_max_num_seqs = default_max_num_seqs
        self.tp_model = tp_model or TpModel()
        self.reconfig, self.parked_power_w = reconfig, parked_power_w
        self.segments = Segments()
        self.instances: list[Instance] = []
        self.pool_of_class: dict[int, str] = {}
        self.pool_arrivals: dict[str, int] = {}
        self.events: list[tuple[float, str]] = []
        self._costs: dict[tuple[int, float, int], PassCosts] = {}
        self._open = len(table)
        self.all_done = self.env.event()
        self.on_progress: Callable[[int, int], None] | None = None

    # -- configurations -------------------------------------------------------------------------------------

    def costs_of(self, config: InstanceConfig) -> PassCosts:
        """Pass costs of `config` (cached)."""
        clock = self.max_clock_mhz if config.clock_mhz is None else float(config.clock_mhz)
        if clock > self.max_clock_mhz:
            raise ConfigError(f"clock {clock:g} MHz is above the GPU's maximum {self.max_clock_mhz:g} MHz")
        seqs = config.max_num_seqs or self.default_max_num_seqs
        key = (config.tp, clock, seqs)
        if key not in self._costs:
            self._costs[key] = PassCosts(
                self.model, config.tp, clock, self.max_clock_mhz, seqs, self.tp_model
            )
        return self._costs[key]

    @property
    def gpus_held(self) -> int:
        """GPUs held by instances not stopped."""
        return sum(i.costs.tp for i in self.instances if i.state != "stopped")

    @property
    def gpus_free(self) -> int:
        """Parked GPUs."""
        return self.gpus - self.gpus_held

    def pool(self, name: str, *, serving_only: bool = False) -> list[Instance]:
        """Instances of pool `name` not stopped (only active and starting ones with `serving_only`)."""
        keep = ("active", "starting") if serving_only else ("active", "starting", "draining")
        return [i for i in self.instances if i.pool == name and i.state in keep]

    # -- changes --------------------------------------------------------------------------------------------

    def add_instance(self, pool: str, config: InstanceConfig, *, cold: bool = True) -> Instance:
        """Start an instance of `config` in `pool` on parked GPUs (cold: after the start time).

        Raises:
            ConfigError: not enough parked GPUs.
        """
        if config.tp > self.gpus_free:
            raise ConfigError(f"pool {pool}: {config.label()} needs {config.tp} GPUs, {self.gpus_free} free")
        delay = self.reconfig.instance_start_s if cold else 0.0
        inst = Instance(
            self.env, len(self.instances), pool, self.costs_of(config), self.table, self.segments,
            start_delay_s=delay, on_finish=self._finished,
        )  # fmt: skip
        self.instances.append(inst)
        if cold:
            self.events.append((self.env.now, f"start {pool}#{inst.index} {config.label()}"))
        return inst

    def set_clock(self, inst: Instance, clock_mhz: float) -> None:
        """Change an instance's SM clock (it pauses for the clock-change time)."""
        cfg = inst.config
        costs = self.costs_of(InstanceConfig(cfg.tp, clock_mhz, cfg.max_num_seqs))
        inst.reconfigure(costs, self.reconfig.clock_change_s)
        self.events.append((self.env.now, f"clock {inst.pool}#{inst.index} {clock_mhz:.0f} MHz"))

    def reshard(self, inst: Instance, tp: int) -> bool:
        """Re-shard an instance to `tp` GPUs (it pauses for the re-shard time); False if GPUs lack."""
        if tp - inst.costs.tp > self.gpus_free:
            return False
        cfg = inst.config
        inst.reconfigure(
            self.costs_of(InstanceConfig(tp, cfg.clock_mhz, cfg.max_num_seqs)), self.reconfig.reshard_s
        )
        self.events.append((self.env.now, f"reshard {inst.pool}#{inst.index} TP{tp}"))
        return True

    def drain(self, inst: Instance) -> None:
        """Stop routing to `inst`; its GPUs are parked once its last request finishes."""
        inst.drain()
        self.events.append((self.env.now, f"drain {inst.pool}#{inst.index}"))

    # -- requests -------------------------------------------------------------------------------------------

    def _finished(self, count: int) -> None:
        self._open -= count
        if self.on_progress is not None:
            self.on_progress(len(self.table), len(self.table) - self._open)
        if self._open <= 0 and not self.all_done.triggered:
            self.all_done.succeed()

    def route(self, rid: int) -> None:
        """Send request `rid` to the least-loaded serving instance of its class's pool."""
        t = self.table
        name = self.pool_of_class[int(t.klass[rid])]
        self.pool_arrivals[name] = self.pool_arrivals.get(name, 0) + 1
        candidates = [i for i in self.pool(name, serving_only=True) if i.state == "active"]
        candidates = candidates or self.pool(name, serving_only=True)
        if not candidates:
            raise ConfigError(f"pool {name} has no instance to serve request {rid}")
        inst = min(candidates, key=lambda i: (i.outstanding, i.index))
        if int(t.input_tokens[rid] + t.output_tokens[rid]) > inst.costs.kv_capacity_tokens:
            t.failed[rid] = True
            t.done_s[rid] = self.env.now
            t.instance[rid] = inst.index
            self._finished(1)
            return
        inst.submit(rid)

    def arrivals(self) -> Generator[simpy.Event, Any, None]:
        """The arrival process: each request at its time, routed on arrival."""
        now = 0.0
        for rid, at in enumerate(self.table.arrival_s.tolist()):
            if at > now:
                yield self.env.timeout(at - now)
                now = at
            self.route(rid)

    def run(self) -> float:
        """Run until every request is finished or failed; return the end time (s)."""
        self.env.process(self.arrivals())
        if len(self.table):
            self.env.run(until=self.all_done)
        end = float(self.env.now)
        for inst in self.instances:
            inst.close(end)
        return end

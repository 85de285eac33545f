"""A `GroupWorker` measures the points of one group with the model loaded once.

A group shares model, engine, mode and options. Executors drive it in-process (local) or
inside a Ray actor (one per group, on a GPU).

It never writes the store: results go back to the caller, which alone writes, so resuming works the
same whichever executor ran the points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from llm_energy.engines.base import Engine
from llm_energy.meters.base import Clock, EnergyMeter
from llm_energy.records import Measurement, RunResult
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import Point

logger = logging.getLogger(__name__)


class GroupWorker:
    """Loads one group's model once and measures its points one by one.

    Args:
        first: Any point of the group (its model, engine, mode, options define the group).
        options: How each point is measured.
        idle_s: Seconds of idle power measured once, before loading.
        sweep_name: Stored in every run's config.
        cpu_tdp_w: TDP for the CPU estimate where no RAPL counter is readable.
        on_status: Called with short progress messages (the CLI shows them).
    """

    def __init__(
        self,
        first: Point,
        options: RunOptions,
        *,
        idle_s: float = 2.0,
        sweep_name: str = "",
        cpu_tdp_w: float | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.first = first
        self.cpu_tdp_w = cpu_tdp_w
        self.say: Callable[[str], None] = on_status or (lambda _msg: None)
        self.options = options
        self.idle_s = idle_s
        self.sweep_name = sweep_name
        self.engine: Engine | None = None
        self.meter: EnergyMeter | None = None
        self.env: dict[str, Any] = {}
        self.idle: Measurement | None = None
        self.load_s = 0.0
        self.clock: Clock = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.effective: dict[str, Any] = {}
        """Device and dtype as resolved on this machine (recorded in each run's config)."""

    def open(self) -> dict[str, Any]:
        """Detect devices, measure idle power, build and load the engine; return the environment."""
        from llm_energy.env import collect_env

        if self.first.engine == "simulated":
            self._open_simulated()
        else:
            from llm_energy.api import resolve_device
            from llm_energy.architectures import load_architecture
            from llm_energy.engines import build_engine
            from llm_energy.meters import detect_cpus, detect_gpus

            p = self.first
            device = resolve_device(p.device)
            self.effective = {"device": device, "dtype": p.dtype if device != "cpu" else "float32"}
            if device.startswith("cuda"):
                self.say("probing GPU energy counters")
            gpus, notes = detect_gpus() if device.startswith("cuda") else ([], [])
            index = int(device.split(":")[1]) if ":" in device else 0
            gpus = [g for g in gpus if g.index == index]
            cpus, cpu_notes = detect_cpus(tdp_w=self.cpu_tdp_w)
            self.env = collect_env(gpus, cpus, notes + cpu_notes)
            arch = load_architecture(p.model)
            self.engine = build_engine(
                p.engine,
                arch,
                mode=p.mode,
                device=device,
                dtype=self.effective["dtype"],  # float32 on CPU: bf16 matmuls are slow on most CPUs
                init=p.init,
                seed=p.seed,
                **p.options,
            )
            self.meter = EnergyMeter(gpus, cpus, sync=self.engine.synchronize)
        assert self.meter is not None and self.engine is not None
        self.say(f"measuring idle power for {self.idle_s:.0f} s")
        self.idle = self.meter.measure_idle(self.idle_s, sleep=self.sleep)
        self.say(f"loading {self.first.model}")
        t0 = self.clock()
        self.engine.load()
        self.load_s = self.clock() - t0
        return self.env

    def _open_simulated(self) -> None:
        from llm_energy.engines.simulated import SimulatedEngine, SimulatedEngineConfig
        from llm_energy.env import collect_env
        from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu

        clock = SimClock()
        gpu = SimulatedGpu(clock, PowerTrace.constant(70.0))
        self.clock = clock
        self.sleep = clock.advance
        self.engine = SimulatedEngine(SimulatedEngineConfig(**self.first.options), clock, [gpu])
        self.meter = EnergyMeter([gpu], clock=clock)
        self.env = collect_env([gpu])

    def run(self, point: Point) -> list[RunResult]:
        """Measure `point` (failures come back as `oom` / `error` results, never as exceptions)."""
        if self.engine is None or self.meter is None:
            self.open()
        assert self.engine is not None and self.meter is not None
        self.say(f"compiling / warming up and measuring {point.engine} {point.mode} batch {point.batch_size}")
        results = run_point(
            self.engine,
            self.meter,
            point.model_copy(update=self.effective),
            point_id=point.point_id(),
            env=self.env,
            options=self.options,
            clock=self.clock,
            load_s=self.load_s,
            idle=self.idle,
        )
        return [_tag(r, self.sweep_name) for r in results]

    def close(self) -> None:
        """Release the engine and the meter."""
        if self.meter is not None:
            self.meter.close()
        if self.engine is not None:
            self.engine.close()
        self.engine = self.meter = None


def _tag(result: RunResult, sweep_name: str) -> RunResult:
    if not sweep_name:
        return result
    from dataclasses import replace

    return replace(result, config={**result.config, "sweep": sweep_name})

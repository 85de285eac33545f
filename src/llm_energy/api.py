"""The Python API: measure a block of code, or measure one configuration end to end.

```python
import llm_energy
with llm_energy.measure() as m:
    run_my_inference()
print(m.result.gpu_energy_j)
```
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from llm_energy.errors import ConfigError
from llm_energy.meters.base import CpuDevice, EnergyMeter, GpuDevice, WindowHandle
from llm_energy.records import RunResult

if TYPE_CHECKING:
    from llm_energy.sweep.runner import RunOptions
    from llm_energy.sweep.spec import Point

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def measure(
    name: str = "total",
    *,
    gpus: Sequence[GpuDevice] | None = None,
    cpus: Sequence[CpuDevice] | None = None,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[WindowHandle]:
    """Measure the energy of the `with` block on every device found (or the ones given).

    Yields:
        A handle whose `result` (a `Measurement`) is set when the block exits normally.
    """
    from llm_energy.meters import detect_cpus, detect_gpus

    if gpus is None:
        gpus, _ = detect_gpus()
    if cpus is None:
        cpus, _ = detect_cpus()
    meter = EnergyMeter(gpus, cpus, clock=clock, sync=sync)
    try:
        with meter.window(name) as handle:
            yield handle
    finally:
        meter.close()


def resolve_device(device: str) -> str:
    """Return `cuda` or `cpu` for `auto`, checking that CUDA exists when asked for.

    Raises:
        ConfigError: `cuda` requested but no CUDA device is available.
    """
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    if device == "auto":
        logger.warning("no CUDA GPU: running on the CPU, where energy is only estimated")
        return "cpu"
    raise ConfigError(f"device {device!r} requested but torch sees no CUDA GPU")


def run_measure(
    point_fields: dict[str, object],
    *,
    repeats: int = 1,
    target_window_s: float = 2.0,
    idle_s: float = 2.0,
    measure_total: bool = True,
    cpu_tdp_w: float | None = None,
    on_status: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Validate, load, and measure one configuration on this machine's devices (the CLI's job).

    Raises:
        ConfigError: an invalid configuration (before anything is loaded).
    """
    from llm_energy.architectures import load_architecture
    from llm_energy.engines import build_engine
    from llm_energy.env import collect_env
    from llm_energy.meters import detect_cpus, detect_gpus
    from llm_energy.sweep.runner import RunOptions, run_point
    from llm_energy.sweep.spec import make_point

    say = on_status or (lambda _msg: None)
    point = make_point(**point_fields)  # validates names and lengths before anything heavy
    options = RunOptions(target_window_s=target_window_s, measure_total=measure_total, repeats=repeats)
    if point.engine == "simulated":
        return _run_simulated(point, options)
    device = resolve_device(point.device)
    point = point.model_copy(
        update={"device": device, "dtype": point.dtype if device != "cpu" else "float32"}
    )
    notes: list[str] = []
    gpus: list[GpuDevice] = []
    if device.startswith("cuda"):
        say("probing GPU energy counters")
        gpus, notes = detect_gpus()
        index = int(device.split(":")[1]) if ":" in device else 0
        gpus = [g for g in gpus if g.index == index]
    cpus, cpu_notes = detect_cpus(tdp_w=cpu_tdp_w)
    notes += cpu_notes
    arch = load_architecture(point.model)
    engine = build_engine(
        point.engine,
        arch,
        mode=point.mode,
        device=device,
        dtype=point.dtype,
        init=point.init,
        seed=point.seed,
    )
    meter = EnergyMeter(gpus, cpus, sync=engine.synchronize)
    try:
        say(f"measuring idle power for {idle_s:.0f} s")
        idle = meter.measure_idle(idle_s)
        say(f"loading {point.model}")
        t0 = time.monotonic()
        engine.load()
        load_s = time.monotonic() - t0
        say(f"compiling / warming up ({point.mode}) and measuring")
        return run_point(
            engine,
            meter,
            point,
            env=collect_env(gpus, cpus, notes),
            options=options,
            load_s=load_s,
            idle=idle,
        )
    finally:
        meter.close()
        engine.close()


def _run_simulated(point: Point, options: RunOptions) -> list[RunResult]:
    """Run the simulated engine on a simulated GPU (a demo and test path; no torch)."""
    from llm_energy.engines.simulated import SimulatedEngine, SimulatedEngineConfig
    from llm_energy.env import collect_env
    from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
    from llm_energy.sweep.runner import run_point

    clock = SimClock()
    gpu = SimulatedGpu(clock, PowerTrace.constant(70.0))
    engine = SimulatedEngine(SimulatedEngineConfig(), clock, [gpu])
    meter = EnergyMeter([gpu], clock=clock)
    idle = meter.measure_idle(2.0, sleep=clock.advance)
    engine.load()
    return run_point(engine, meter, point, env=collect_env([gpu]), options=options, clock=clock, idle=idle)

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
import time
from collections.abc import Callable, Iterator, Sequence

from llm_energy.meters.base import CpuDevice, EnergyMeter, GpuDevice, WindowHandle
from llm_energy.records import RunResult


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
    from llm_energy.sweep.runner import RunOptions
    from llm_energy.sweep.spec import make_point
    from llm_energy.sweep.worker import GroupWorker, measure_one

    point = make_point(**point_fields)  # validates names and lengths before anything heavy
    options = RunOptions(target_window_s=target_window_s, measure_total=measure_total, repeats=repeats)
    return measure_one(
        GroupWorker(point, options, idle_s=idle_s, cpu_tdp_w=cpu_tdp_w, on_status=on_status), point
    )

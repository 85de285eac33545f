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

from llm_energy.errors import ConfigError
from llm_energy.meters.base import CpuDevice, EnergyMeter, GpuDevice, WindowHandle
from llm_energy.records import RunResult

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
    """Return `cuda`, `cuda:N` or `cpu` for `device` (`auto`: CUDA where torch sees a GPU, else the CPU).

    Raises:
        ConfigError: an unknown device name, or a CUDA device torch does not see.
    """
    from llm_energy.sweep.spec import DEVICES, check_device

    try:
        check_device(device)
    except ValueError:
        raise ConfigError(f"unknown device {device!r}; valid devices: {DEVICES}") from None
    if device == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        if count:
            return "cuda"
        logger.warning("no CUDA GPU: running on the CPU, where energy is only estimated")
        return "cpu"
    if not count:
        raise ConfigError(
            f"device {device!r} requested but torch sees no CUDA GPU (use --device cpu or auto)"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError(
            f"device {device!r} requested but torch sees {count} CUDA GPU(s): cuda:0..cuda:{count - 1}"
        )
    return device


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
    from llm_energy.sweep.worker import GroupWorker

    point = make_point(**point_fields)  # validates names and lengths before anything heavy
    options = RunOptions(target_window_s=target_window_s, measure_total=measure_total, repeats=repeats)
    worker = GroupWorker(point, options, idle_s=idle_s, cpu_tdp_w=cpu_tdp_w, on_status=on_status)
    try:
        worker.open()
        return worker.run(point)
    finally:
        worker.close()

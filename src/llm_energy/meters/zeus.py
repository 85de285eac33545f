"""NVIDIA/AMD GPUs through Zeus's device layer (`zeus.device.get_gpus`): the production `GpuDevice`.

We wrap Zeus at its device layer rather than using `ZeusMonitor`, because `ZeusMonitor` reads
`time()` internally and so cannot share an injected (simulated) clock with our window bookkeeping,
and because our windows need the power reading at each edge to state an uncertainty
(docs/decisions.md). Zeus exceptions are mapped to our error tree at this boundary, in one place.
Everything here only reads: no clock, power-limit or persistence setting is ever changed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from llm_energy.errors import CounterUnavailable, MeterError
from llm_energy.meters.registry import MeterBackend
from llm_energy.units import mw_to_w

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_UPDATE_PERIOD_S = 0.1
"""NVML energy/power refresh period seen on the lent H100; `measure_update_period_s` refines it."""


def _map_zeus_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Translate Zeus GPU exceptions into `MeterError` / `CounterUnavailable`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from zeus.device.exception import ZeusBaseGPUError
        from zeus.device.gpu.common import ZeusGPUNotSupportedError

        try:
            return func(*args, **kwargs)
        except ZeusGPUNotSupportedError as exc:
            raise CounterUnavailable(f"not supported by this GPU: {exc}") from exc
        except ZeusBaseGPUError as exc:
            raise MeterError(f"GPU reading failed ({type(exc).__name__}): {exc}") from exc

    return wrapper


def zeus_get_gpus() -> Any:
    """Return Zeus's GPU list (`zeus.device.get_gpus()`), with a broken amdsmi hidden first.

    Without `compat.hide_broken_amdsmi`, Zeus logs a WARNING about amdsmi on every lookup on any
    machine without ROCm.
    """
    from llm_energy.compat import hide_broken_amdsmi

    hide_broken_amdsmi()
    from zeus.device import get_gpus

    return get_gpus()


@_map_zeus_errors
def zeus_gpu_count() -> int:
    """Return how many GPUs Zeus sees (respecting CUDA_VISIBLE_DEVICES), 0 if none.

    Raises:
        MeterError: the GPU management library failed for another reason than no GPU.
    """
    from zeus.device.gpu.common import ZeusGPUInitError

    try:
        return len(zeus_get_gpus())
    except ZeusGPUInitError:
        return 0


class ZeusGpu:
    """One GPU read through Zeus: NVML's millijoule energy counter and milliwatt power.

    Args:
        index: GPU index as Zeus numbers them (CUDA_VISIBLE_DEVICES order).
        update_period_s: Counter refresh period; measure it with `measure_update_period_s`.
    """

    def __init__(self, index: int = 0, *, update_period_s: float = DEFAULT_UPDATE_PERIOD_S) -> None:
        self._index = index
        self._update_period_s = update_period_s
        self._gpus = _map_zeus_errors(zeus_get_gpus)()
        if index >= len(self._gpus):
            raise MeterError(f"gpu:{index} does not exist ({len(self._gpus)} GPUs visible)")

    @property
    def index(self) -> int:
        """Device index."""
        return self._index

    @property
    def update_period_s(self) -> float:
        """Counter refresh period in seconds."""
        return self._update_period_s

    @update_period_s.setter
    def update_period_s(self, value_s: float) -> None:
        self._update_period_s = value_s

    @_map_zeus_errors
    def total_energy_mj(self) -> int:
        """Return the energy counter in millijoules (CounterUnavailable before Volta)."""
        if not self._gpus.supports_get_total_energy_consumption(self._index):
            raise CounterUnavailable(f"gpu:{self._index} has no total-energy counter")
        return int(self._gpus.get_total_energy_consumption(self._index))

    @_map_zeus_errors
    def power_mw(self) -> int:
        """Return the instantaneous power reading in milliwatts."""
        return int(self._gpus.get_instant_power_usage(self._index))

    def info(self) -> dict[str, Any]:
        """Return name, power limit, current clocks, memory and driver (read-only NVML queries)."""
        out: dict[str, Any] = {"update_period_s": self._update_period_s}
        try:
            out["name"] = _map_zeus_errors(self._gpus.get_name)(self._index)
            out["power_limit_w"] = mw_to_w(
                _map_zeus_errors(self._gpus.get_power_management_limit)(self._index)
            )
        except MeterError as exc:
            logger.info("gpu:%d info incomplete: %s", self._index, exc)
        out.update(_nvml_extras(self._gpus, self._index))
        return out


def _nvml_extras(gpus: Any, index: int) -> dict[str, Any]:
    """Clocks, memory and driver through pynvml; empty where the GPU is not NVIDIA."""
    try:
        import pynvml

        handle = gpus.gpus[index].handle
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "cuda_driver_version": pynvml.nvmlSystemGetCudaDriverVersion_v2(),
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "memory_total_bytes": int(mem.total),
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        }
    except Exception as exc:  # noqa: BLE001 - facts for the record only; a missing one is not fatal
        logger.info("gpu:%d NVML extras unavailable: %s", index, exc)
        return {}


def detect_zeus_gpus(*, probe_update_period: bool = True, **_options: Any) -> tuple[list[ZeusGpu], list[str]]:
    """Return the GPUs visible through Zeus (empty without a GPU) and notes on what happened.

    With `probe_update_period`, each GPU's counter update period is measured (up to 1 s per GPU);
    a GPU without an energy counter is kept, noted, and metered by power sampling.
    """
    from llm_energy.meters.base import measure_update_period_s

    notes: list[str] = []
    try:
        count = zeus_gpu_count()
    except MeterError as exc:
        return [], [f"GPU management library failed: {exc}"]
    if count == 0:
        return [], ["no GPU visible to NVML/AMDSMI"]
    gpus: list[ZeusGpu] = []
    for i in range(count):
        gpu = ZeusGpu(i)
        if probe_update_period:
            try:
                period_s = measure_update_period_s(gpu, max_wait_s=1.0)
            except CounterUnavailable:
                period_s = None
                notes.append(f"gpu:{i} has no energy counter: power will be sampled")
            if period_s is not None:
                gpu.update_period_s = period_s
        gpus.append(gpu)
    return gpus, notes


BACKEND = MeterBackend("zeus", "gpu", detect_zeus_gpus)
"""NVIDIA and AMD GPUs through Zeus's device layer (NVML / AMDSMI energy counters)."""

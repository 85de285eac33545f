"""A real GPU's SM clock and power limit through Zeus's device layer (`zeus.device.get_gpus`).

This is the only module that changes a real GPU, and only when `apply_gpu_settings` calls it, which
it does only behind `allow=True`. Zeus GPU exceptions are mapped to `GpuSettingsError` here, in one
decorator. Zeus numbers GPUs in `CUDA_VISIBLE_DEVICES` order, so the restore file also records each
GPU's UUID, and recovery refuses to touch a GPU whose UUID differs.

NVML cannot read back a locked clock range, so `current_locked_sm_clocks_mhz` reports None
("unlocked") and the restore is a reset (`nvidia-smi -rgc`): a clock lock someone else set before the
run is not preserved. The power limit is read and restored exactly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from llm_energy.errors import GpuSettingsError
from llm_energy.units import mw_to_w, w_to_mw

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _map_zeus_setting_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Translate Zeus GPU exceptions into `GpuSettingsError` with a reason a user can act on."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from zeus.device.exception import ZeusBaseGPUError
        from zeus.device.gpu.common import (
            ZeusGPUInitError,
            ZeusGPUInvalidArgError,
            ZeusGPUNoPermissionError,
            ZeusGPUNotSupportedError,
        )

        try:
            return func(*args, **kwargs)
        except ZeusGPUNoPermissionError as exc:
            raise GpuSettingsError(
                f"no privilege to change GPU settings (needs root / CAP_SYS_ADMIN or a Zeus daemon): {exc}"
            ) from exc
        except ZeusGPUNotSupportedError as exc:
            raise GpuSettingsError(f"this GPU does not support the setting: {exc}") from exc
        except ZeusGPUInvalidArgError as exc:
            raise GpuSettingsError(f"the GPU rejected the value: {exc}") from exc
        except ZeusGPUInitError as exc:
            raise GpuSettingsError(f"no GPU management library (NVML/AMDSMI): {exc}") from exc
        except ZeusBaseGPUError as exc:
            raise GpuSettingsError(f"GPU settings call failed ({type(exc).__name__}): {exc}") from exc

    return wrapper


class ZeusSettableGpu:
    """One GPU's settable clock and power limit through Zeus (`SettableGpu`).

    Args:
        index: GPU index as Zeus numbers them (CUDA_VISIBLE_DEVICES order).

    Raises:
        GpuSettingsError: no GPU management library, or no GPU with this index.
    """

    def __init__(self, index: int = 0) -> None:
        from llm_energy.meters.zeus import zeus_get_gpus

        self._index = index
        self._gpus = _map_zeus_setting_errors(zeus_get_gpus)()
        if not 0 <= index < len(self._gpus):
            raise GpuSettingsError(f"gpu:{index} does not exist ({len(self._gpus)} GPUs visible)")

    @property
    def index(self) -> int:
        """Device index."""
        return self._index

    def uuid(self) -> str | None:
        """Return the NVML UUID, None where it cannot be read (e.g. AMD)."""
        try:
            import pynvml

            return str(pynvml.nvmlDeviceGetUUID(self._gpus.gpus[self._index].handle))
        except Exception as exc:  # noqa: BLE001 - an identifier for safety checks only
            logger.info("gpu:%d UUID unavailable: %s", self._index, exc)
            return None

    def has_settings_privilege(self) -> bool:
        """Return whether this process has SYS_ADMIN or Zeus talks to a privileged Zeus daemon."""
        from zeus.device.common import has_sys_admin

        try:
            from zeus.device.gpu.nvidia import ZeusdNVIDIAGPU

            if isinstance(self._gpus.gpus[self._index], ZeusdNVIDIAGPU):
                return True
        except ImportError:
            pass
        return bool(has_sys_admin())

    @_map_zeus_setting_errors
    def supported_sm_clocks_mhz(self) -> list[int]:
        """Return the supported SM (graphics) clocks at the default memory clock, ascending, in MHz."""
        return sorted(int(c) for c in self._gpus.get_supported_graphics_clocks(self._index))

    @_map_zeus_setting_errors
    def power_limit_range_w(self) -> tuple[float, float]:
        """Return the (min, max) power-limit constraints in watts."""
        low_mw, high_mw = self._gpus.get_power_management_limit_constraints(self._index)
        return mw_to_w(low_mw), mw_to_w(high_mw)

    def current_locked_sm_clocks_mhz(self) -> tuple[int, int] | None:
        """Return None: NVML has no query for the locked range, so it is taken as unlocked."""
        return None

    @_map_zeus_setting_errors
    def current_power_limit_w(self) -> float:
        """Return the current power limit in watts."""
        return mw_to_w(self._gpus.get_power_management_limit(self._index))

    @_map_zeus_setting_errors
    def set_locked_sm_clock_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock to [min_mhz, max_mhz] (`nvidia-smi -lgc`)."""
        logger.warning("gpu:%d: locking SM clocks to %d–%d MHz", self._index, min_mhz, max_mhz)
        self._gpus.set_gpu_locked_clocks(self._index, min_mhz, max_mhz)

    @_map_zeus_setting_errors
    def reset_locked_sm_clocks(self) -> None:
        """Unlock the SM clocks (`nvidia-smi -rgc`)."""
        logger.warning("gpu:%d: resetting locked SM clocks", self._index)
        self._gpus.reset_gpu_locked_clocks(self._index)

    @_map_zeus_setting_errors
    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Set the power limit in watts (`nvidia-smi -pl`)."""
        logger.warning("gpu:%d: setting the power limit to %g W", self._index, power_limit_w)
        self._gpus.set_power_management_limit(self._index, round(w_to_mw(power_limit_w)))

    @_map_zeus_setting_errors
    def reset_power_limit(self) -> None:
        """Return the power limit to the vendor default."""
        logger.warning("gpu:%d: resetting the power limit", self._index)
        self._gpus.reset_power_management_limit(self._index)

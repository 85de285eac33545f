"""GPU clock and power-limit control (`--allow-gpu-settings`), always restored, and a DVFS model.

`apply_gpu_settings` changes a GPU's locked SM clock or power limit for a block and restores it on
every exit path (restore file, signals, recovery at the next start); `ZeusSettableGpu` is the real
backend and `SimulatedGpu` the test one. `dvfs_prediction` models energy versus clock (`modelled`)
where no measurement at that clock exists.
"""

from __future__ import annotations

from llm_energy.control.base import (
    GpuSettings,
    SettableGpu,
    apply_gpu_settings,
    recover_from_restore_file,
    validate_gpu_settings,
)
from llm_energy.control.dvfs import (
    H100_DVFS_PARAMS,
    DvfsParams,
    DvfsPrediction,
    dvfs_energy_factor,
    dvfs_prediction,
    predict_energy_vs_clock,
)
from llm_energy.control.restore_file import default_restore_file

__all__ = [
    "H100_DVFS_PARAMS",
    "DvfsParams",
    "DvfsPrediction",
    "GpuSettings",
    "SettableGpu",
    "apply_gpu_settings",
    "default_restore_file",
    "dvfs_energy_factor",
    "dvfs_prediction",
    "predict_energy_vs_clock",
    "recover_from_restore_file",
    "validate_gpu_settings",
]

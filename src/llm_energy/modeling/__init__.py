"""Energy models of workloads, fitted from calibration sweeps.

Binned (the seed study's), parametric, and the FLOPs baseline; `EnergyProfile` files hold a fitted
configuration.
"""

from __future__ import annotations

from llm_energy.meters.gpus import GPU_SPECS, GpuSpec, gpu_spec
from llm_energy.modeling.binned import BinnedModel, RequestEnergy
from llm_energy.modeling.bins import Bins, log_bins, p1_bins
from llm_energy.modeling.calibration import CalibrationGrid, calibration_table, max_feasible_batches
from llm_energy.modeling.flops import FlopsModel, request_flops, roofline_s
from llm_energy.modeling.parametric import ParametricModel
from llm_energy.modeling.profile import BUNDLED_PROFILES, EnergyProfile, fit_profile, load_profile

__all__ = [
    "BUNDLED_PROFILES",
    "GPU_SPECS",
    "BinnedModel",
    "Bins",
    "CalibrationGrid",
    "EnergyProfile",
    "FlopsModel",
    "GpuSpec",
    "ParametricModel",
    "RequestEnergy",
    "calibration_table",
    "fit_profile",
    "gpu_spec",
    "load_profile",
    "log_bins",
    "max_feasible_batches",
    "p1_bins",
    "request_flops",
    "roofline_s",
]

"""Unit conversions: the one place where device units (mJ, mW, uJ) become SI.

Devices report integers in their own units (NVML: millijoules and milliwatts; RAPL: microjoules).
Those raw readings keep their unit in their name (`total_energy_mj`, `power_mw`, `energy_uj`) and
are converted exactly once, here, so no module divides by 1000 inline.
"""

from __future__ import annotations

J_PER_KWH = 3.6e6


def mj_to_j(energy_mj: float) -> float:
    """Convert millijoules to joules."""
    return energy_mj / 1e3


def uj_to_j(energy_uj: float) -> float:
    """Convert microjoules to joules."""
    return energy_uj / 1e6


def j_to_mj(energy_j: float) -> float:
    """Convert joules to millijoules."""
    return energy_j * 1e3


def mw_to_w(power_mw: float) -> float:
    """Convert milliwatts to watts."""
    return power_mw / 1e3


def w_to_mw(power_w: float) -> float:
    """Convert watts to milliwatts."""
    return power_w * 1e3


def j_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours."""
    return energy_j / J_PER_KWH


def kwh_to_j(energy_kwh: float) -> float:
    """Convert kilowatt-hours to joules."""
    return energy_kwh * J_PER_KWH


def s_to_ms(duration_s: float) -> float:
    """Convert seconds to milliseconds."""
    return duration_s * 1e3

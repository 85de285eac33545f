"""The report's "Environment" section: where the runs were measured, from their `env_*` columns.

GPU, driver, clocks, CPU and its meters, the NVML update period and package versions; the profile's
environment when the runs table has none; a note when the runs come from more than one environment.
Every value from the data is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from llm_energy.report._html_parts import _distinct, _e, _json_list, _json_value, _kv_table, _text

if TYPE_CHECKING:
    import pandas as pd

    from llm_energy.modeling.profile import EnergyProfile

_ENV_ORDER: Final = (
    "gpu_name",
    "gpu_count",
    "driver",
    "power_limit_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "cpu_model",
    "cpu_count",
    "cpu_meters",
    "python",
    "platform",
    "host",
    "cuda_visible_devices",
    "env_id",
)
_ENV_SKIP: Final = frozenset({"gpus", "versions", "notes"})
_ENV_LABELS: Final = {
    "gpu_name": "GPU",
    "gpu_count": "GPUs",
    "power_limit_w": "power limit (W)",
    "sm_clock_mhz": "SM clock at start (MHz)",
    "mem_clock_mhz": "memory clock (MHz)",
    "cpu_model": "CPU",
    "cpu_count": "CPU threads",
    "cpu_meters": "CPU meters",
    "python": "Python",
    "cuda_visible_devices": "CUDA_VISIBLE_DEVICES",
    "env_id": "environment id",
}


def environment_section(frame: pd.DataFrame, profile: EnergyProfile | None) -> str:
    """The "Environment" section (HTML): GPU, driver, CPU, meters and versions of the runs (escaped)."""
    env = _environment(frame)
    note = ""
    if not env and profile is not None:
        env = {
            "gpu_name": [profile.gpu_name],
            "gpu_count": [profile.gpu_count],
            "env_id": [profile.env_id],
            **{f"version of {k}": [v] for k, v in sorted(profile.versions.items())},
        }
        note = '<p class="meta">The runs table has no environment columns: shown from the profile.</p>'
    if not env:
        return "<h2>Environment</h2><p>No environment recorded.</p>"
    many = [k for k, values in env.items() if len(values) > 1]
    if many:
        note += (
            '<p class="note">The runs come from more than one environment (they differ in '
            + ", ".join(_e(k) for k in many)
            + "): compare figures only within one.</p>"
        )
    rows = [
        (_e(_ENV_LABELS.get(key, key.replace("_", " "))), "; ".join(_text(_json_value(v)) for v in values))
        for key, values in env.items()
    ]
    return "<h2>Environment</h2>" + note + _kv_table(rows, escape=False)


def _environment(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Distinct values of each `env_*` column (known keys first; versions and notes unpacked)."""
    env: dict[str, list[Any]] = {}
    names = [c.removeprefix("env_") for c in frame.columns if str(c).startswith("env_")]
    ordered = [k for k in _ENV_ORDER if k in names] + sorted(
        k for k in names if k not in _ENV_ORDER and k not in _ENV_SKIP
    )
    for key in ordered:
        values = _distinct(frame[f"env_{key}"])
        if values:
            env[key] = values
    if "gpus" in names:
        periods = sorted(
            {
                round(float(gpu["update_period_s"]), 4)
                for cell in _distinct(frame["env_gpus"])
                for gpu in _json_list(cell)
                if isinstance(gpu, Mapping) and isinstance(gpu.get("update_period_s"), int | float)
            }
        )
        if periods:
            env["NVML update period s"] = list(periods)
    if "versions" in names:
        versions: dict[str, list[Any]] = {}
        for cell in _distinct(frame["env_versions"]):
            parsed = _json_value(cell)
            if isinstance(parsed, Mapping):
                for package, version in parsed.items():
                    if version is not None and version not in versions.setdefault(str(package), []):
                        versions[str(package)].append(version)
        env.update({f"version of {k}": v for k, v in versions.items() if v})
    if "notes" in names:
        notes = sorted({str(n) for cell in _distinct(frame["env_notes"]) for n in _json_list(cell)})
        if notes:
            env["notes"] = notes
    return env

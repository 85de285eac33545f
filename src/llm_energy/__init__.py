"""llm-energy: measure, model and cut the energy of LLM inference.

Importing this package never imports torch, transformers or vLLM; heavy backends load on use.
"""

from __future__ import annotations

from llm_energy.api import measure, run_measure
from llm_energy.errors import (
    ConfigError,
    CounterReset,
    CounterUnavailable,
    EngineError,
    GpuSettingsError,
    LlmEnergyError,
    MeasurementWarning,
    MeterError,
    OutOfMemory,
    StoreError,
)
from llm_energy.meters.base import EnergyMeter
from llm_energy.records import Measurement, PhaseResult, Request, RunResult

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CounterReset",
    "CounterUnavailable",
    "EnergyMeter",
    "EngineError",
    "GpuSettingsError",
    "LlmEnergyError",
    "Measurement",
    "MeasurementWarning",
    "MeterError",
    "OutOfMemory",
    "PhaseResult",
    "Request",
    "RunResult",
    "StoreError",
    "__version__",
    "measure",
    "run_measure",
]

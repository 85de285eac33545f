"""Fixtures of the report tests: the bundled H100 calibration runs, their profile and trace estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm_energy.estimate import Estimate, estimate_trace
from llm_energy.modeling.profile import EnergyProfile, load_profile
from llm_energy.report.sample import SAMPLE_PROFILE, bundled_calibration_frame


@pytest.fixture(scope="session")
def calibration() -> pd.DataFrame:
    """The bundled calibration's regular grid with its env_* columns: llama-3.1-8b/vllm/cudagraphs at batch
    1-128 x input 128/512/2048 x output 32/128, one ok run each (the first sweep). The rows appended later at
    input 4096/8192 (batch 1/8/64, two of them oom) are left out: the plot tests count lines of a full grid.
    Copy before changing."""
    frame = bundled_calibration_frame()
    return frame[frame["input_len"] <= 2048].reset_index(drop=True)


@pytest.fixture(scope="session")
def profile() -> EnergyProfile:
    """The profile fitted on those runs (H100 vLLM), not the package's default (the H200 one)."""
    return load_profile(SAMPLE_PROFILE)


def _requests() -> tuple[np.ndarray, np.ndarray]:
    """2,000 random requests: inputs 16-4,000, outputs 8-700 (some outside the calibrated range)."""
    rng = np.random.default_rng(7)
    return rng.integers(16, 4000, size=2000), rng.integers(8, 700, size=2000)


@pytest.fixture(scope="session")
def estimate(profile: EnergyProfile) -> Estimate:
    """A physical-model estimate (the default method) of 2,000 random requests: per class, no bins."""
    return estimate_trace(*_requests(), profile)


@pytest.fixture(scope="session")
def binned_estimate(profile: EnergyProfile) -> Estimate:
    """The same requests estimated by the binned method (many bins)."""
    return estimate_trace(*_requests(), profile, method="binned")

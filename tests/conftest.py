"""Shared fixtures: a simulated clock and GPU, a simulated engine, a temporary store."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from llm_energy.engines.simulated import SIMULATED_CALIBRATION_SPEC, SimulatedEngine, SimulatedEngineConfig
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.store import Store

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """Load a script of benchmarks/ (not a package) as a module: `benchmark_script("axes_gpu").main(...)`."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
        spec.loader.exec_module(module)
        return module

    return load


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sim_gpu(sim_clock: SimClock) -> SimulatedGpu:
    return SimulatedGpu(sim_clock, PowerTrace.constant(700.0))


@pytest.fixture
def sim_engine(sim_clock: SimClock, sim_gpu: SimulatedGpu) -> SimulatedEngine:
    return SimulatedEngine(SimulatedEngineConfig(), sim_clock, [sim_gpu])


@pytest.fixture
def tmp_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "runs.db")
    yield store
    store.close()


@pytest.fixture(scope="session")
def sim_calibration_spec() -> str:
    return SIMULATED_CALIBRATION_SPEC


@pytest.fixture(scope="session")
def sim_profile(tmp_path_factory: pytest.TempPathFactory) -> EnergyProfile:
    """A profile fitted from `SIMULATED_CALIBRATION_SPEC` run on the simulated engine (known true energy)."""
    from llm_energy.modeling.profile import fit_profile
    from llm_energy.sweep.spec import parse_spec
    from llm_energy.sweep.sweep import run_sweep

    with Store(tmp_path_factory.mktemp("sim-profile") / "runs.db") as store:
        run_sweep(parse_spec(SIMULATED_CALIBRATION_SPEC), store)
        return fit_profile(store.runs_frame())

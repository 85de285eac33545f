"""docs/extending.md's worked example: a toy engine and a toy meter from outside the package.

Both are defined here, in a test file, and registered with the public calls (`register_engine`,
`register_meter`); no file of `llm_energy` knows them. They then run through `llm-energy measure`
and a sweep like the built-in ones: the worker opens the toy engine by name, detection finds the toy
meter, the runner measures each phase in its windows, and the store keeps the runs. A distribution
that publishes them under the entry-point groups is registered the same way (last test).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.engines import BUILTIN_ENGINES, ENTRY_POINT_GROUP, EngineRegistry, register_engine
from llm_energy.engines.base import Batch, EngineDescriptor
from llm_energy.meters import METERS, MeterBackend, register_meter
from llm_energy.records import Source
from llm_energy.store import Store
from llm_energy.sweep.spec import parse_spec
from llm_energy.sweep.sweep import run_sweep

TOY_POWER_W = 40.0


class ToyConfig(BaseModel):
    """The toy engine's settings: the point's own fields, then its one option."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = "default"
    device: str = "cpu"
    dtype: str = "float32"
    init: str | None = None
    seed: int = 0
    token_s: float = Field(2e-5, gt=0, description="wall seconds per token processed")


class ToyEngine:
    """An engine whose work is sleeping a little per token (it runs anywhere, in milliseconds)."""

    name: ClassVar[str] = "toy"
    separate_decode: ClassVar[bool] = True
    Config: ClassVar[type[ToyConfig]] = ToyConfig
    descriptor: ClassVar[EngineDescriptor] = EngineDescriptor(modes=("default",), load_s=1.0)

    def __init__(self, config: ToyConfig, arch: Any) -> None:
        self.config = config
        self.arch = arch
        self.batch: Batch | None = None

    def load(self) -> None:
        """Nothing to load."""

    def prepare(self, batch: Batch) -> None:
        """Remember the batch."""
        self.batch = batch

    def prefill(self) -> None:
        """Sleep for the prefill tokens."""
        assert self.batch is not None
        time.sleep(self.batch.prefill_tokens * self.config.token_s)

    def decode(self) -> int:
        """Sleep for the decode tokens; return them."""
        assert self.batch is not None
        time.sleep(self.batch.decode_tokens * self.config.token_s)
        return self.batch.decode_tokens

    def generate(self) -> int:
        """Prefill then decode."""
        assert self.batch is not None
        self.prefill()
        return self.batch.batch_size + self.decode()

    def synchronize(self) -> None:
        """Nothing runs asynchronously."""

    def describe(self) -> dict[str, Any]:
        """The toy's settings."""
        return {"engine": self.name, **self.config.model_dump()}

    def close(self) -> None:
        """Nothing to release."""


class ToyCpu:
    """A CPU 'meter' that reads a constant `TOY_POWER_W` as a microjoule counter."""

    source: Source = "measured"

    def __init__(self) -> None:
        self.t0_s = time.monotonic()

    def domains(self) -> list[str]:
        """One domain."""
        return ["cpu:0"]

    def energy_uj(self) -> dict[str, int]:
        """Constant power integrated since construction."""
        return {"cpu:0": round(TOY_POWER_W * (time.monotonic() - self.t0_s) * 1e6)}

    def wrap_uj(self) -> dict[str, int]:
        """Never wraps."""
        return {"cpu:0": 0}

    def uncertainty_j(self, energy_j: float, duration_s: float) -> float:
        """1% of the reading."""
        del duration_s
        return 0.01 * energy_j


def detect_toy_cpu(**_options: Any) -> tuple[list[ToyCpu], list[str]]:
    """The toy meter is always there."""
    return [ToyCpu()], ["cpu:0 is the toy meter"]


TOY_METER = MeterBackend("toy", "cpu", detect_toy_cpu, priority=0)  # before RAPL


@pytest.fixture
def toy() -> Iterator[None]:
    """Register the toy engine and meter for one test, and take them away after it."""
    from llm_energy.engines import ENGINES

    register_engine(ToyEngine)
    register_meter(TOY_METER)
    try:
        yield
    finally:
        ENGINES.unregister("toy")
        METERS.unregister("toy")


def _cpu_energy_j(run: Any, phase: str) -> float:
    return sum(j for d, j in run.phases[phase].measurement.energy_j.items() if d.startswith("cpu"))


def test_a_toy_engine_and_meter_run_through_measure(toy: None, tmp_path: Path) -> None:
    """`llm-energy measure --engine toy` measures the toy engine with the toy meter and stores it."""
    db = tmp_path / "runs.db"
    args = "measure --engine toy --model tiny --device cpu --batch-size 2 --input-len 32 --output-len 8"
    result = CliRunner().invoke(
        app, [*args.split(), "--window-s", "0.05", "--idle-s", "0.01", "--db", str(db), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["config"]["engine"] == "toy"
    with Store(db, read_only=True) as store:
        (run,) = store.read_runs()
    assert run.status == "ok" and run.config["engine"] == "toy"
    assert any("ToyCpu" in meter for meter in run.env["cpu_meters"])
    for phase in ("prefill", "decode", "total"):
        measured = run.phases[phase].measurement
        assert _cpu_energy_j(run, phase) == pytest.approx(
            TOY_POWER_W * measured.duration_s, rel=0.05, abs=1e-3
        )


def test_a_toy_engine_runs_in_a_sweep(toy: None, tmp_path: Path) -> None:
    """A sweep spec names the toy engine and its option like a built-in one; every point is stored."""
    spec = parse_spec(
        "name: toy-sweep\nmodels: [tiny]\nengines: [{engine: toy, token_s: 1.0e-5}]\n"
        "batch_sizes: [1, 4]\ninput_lens: [16]\noutput_lens: [4]\nwindow_s: 0.05\nidle_s: 0.01\n"
        "device: cpu\n"
    )
    with Store(tmp_path / "runs.db") as store:
        summary = run_sweep(spec, store)
        runs = store.read_runs()
    assert summary.ok == 2 and {r.config["batch_size"] for r in runs} == {1, 4}
    assert all(r.config["options"] == {"token_s": 1.0e-5} for r in runs)
    assert all(_cpu_energy_j(r, "total") > 0 for r in runs)


PLUGIN = """\
from pydantic import BaseModel

from llm_energy.engines.base import EngineDescriptor


class PublishedConfig(BaseModel):
    mode: str = "default"


class PublishedEngine:
    name = "published-toy"
    separate_decode = True
    Config = PublishedConfig
    descriptor = EngineDescriptor(modes=("default",))
"""


def test_a_published_engine_is_found_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed distribution's `llm_energy.engines` entry point registers its engine class."""
    (tmp_path / "toy_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    metadata = "Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n"
    (info / "METADATA").write_text(metadata, encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\npublished-toy = toy_plugin:PublishedEngine\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_plugin", raising=False)
    registry = EngineRegistry(BUILTIN_ENGINES, ENTRY_POINT_GROUP)  # a fresh one reads the entry points
    assert registry["published-toy"].__name__ == "PublishedEngine" and "hf" in registry

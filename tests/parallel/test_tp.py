"""Tensor parallelism on the CPU: 2 gloo ranks of the tiny model, measured by rank 0.

The follower rank is a real process (`python -m llm_energy.parallel.follower`); rank 0 is this one.
The GPUs are simulated (one per rank, each at its own constant power, on the wall clock) so the test
checks that rank 0's meter measures every GPU of the group and that the group's energy is their sum.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_energy.architectures import load_architecture
from llm_energy.cli import app
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.engines.hf_tp import TPEngine, token_lists
from llm_energy.errors import ConfigError, EngineError
from llm_energy.meters.base import EnergyMeter
from llm_energy.meters.simulated import PowerTrace, SimClock, SimulatedGpu
from llm_energy.records import RunResult
from llm_energy.store import Store
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import make_point, parse_spec
from llm_energy.validation.parallel import compare_replicas_tp, comparison_table

pytest.importorskip("torch")

CPU = HFEngineConfig(device="cpu", dtype="float32")
POWER_W = {0: 100.0, 1: 150.0}


class WallClock(SimClock):
    """A `SimClock` that reads real time, so simulated GPUs integrate power over real windows."""

    def __call__(self) -> float:
        return time.monotonic()


def _sim_meter(engine: TPEngine | HFEngine, indices: tuple[int, ...]) -> EnergyMeter:
    clock = WallClock()
    gpus = [
        SimulatedGpu(clock, PowerTrace.constant(POWER_W[i]), index=i, update_period_s=0.01) for i in indices
    ]
    return EnergyMeter(gpus, clock=time.monotonic, sync=engine.synchronize)


@pytest.fixture(scope="module")
def tp2() -> Iterator[TPEngine]:
    engine = TPEngine(CPU, load_architecture("tiny"), tp_size=2, timeout_s=120)
    try:
        engine.load()
        yield engine
    finally:
        engine.close()


def _tp1_tokens(batch: Batch) -> list[list[int]]:
    engine = HFEngine(CPU, load_architecture("tiny"))
    engine.load()
    engine.prepare(batch)
    engine.generate()
    return token_lists(engine.output_ids)


# -- checks before anything loads -------------------------------------------------------------


@pytest.mark.parametrize(("tp_size", "what"), [(3, "4 attention heads"), (4, "2 key/value heads")])
def test_tp_size_must_divide_the_heads(tp_size: int, what: str) -> None:
    with pytest.raises(ConfigError, match=f"tp_size = {tp_size} does not divide tiny's {what}"):
        make_point(model="tiny", device="cpu", tp_size=tp_size)


def test_tp_size_above_the_visible_gpus_is_refused_before_loading() -> None:
    import torch

    visible = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"tp_size = {visible + 1} needs {visible + 1} GPUs"):
        TPEngine(HFEngineConfig(device="cuda"), load_architecture("llama-3.1-8b"), tp_size=visible + 1)
    with pytest.raises(ConfigError, match="tp_size = 2 needs 2 GPUs from cuda:3 on, but 4 are visible"):
        TPEngine(HFEngineConfig(device="cuda:3"), load_architecture("tiny"), tp_size=2, visible_gpus=4)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"engine": "simulated"}, "needs engine 'hf'"),
        ({"mode": "compiled"}, "runs in mode eager only, not 'compiled'"),
        ({"tp_size": 0}, "tp_size"),
        ({"power_limit_w": 300.0}, "tp_size = 2 with GPU settings"),
    ],
)
def test_tp_settings_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_point(**{"model": "tiny", "device": "cpu", "tp_size": 2, **fields})


def test_spec_tp_sizes_axis_makes_one_group_per_size_and_keeps_tp1_ids() -> None:
    base = "name: s\nmodels: [tiny]\nengines: [{engine: hf}]\nbatch_sizes: [2]\n"
    base += "input_lens: [8]\noutput_lens: [4]\n"
    plain = parse_spec(base).points()
    both = parse_spec(base + "tp_sizes: [2, 1]\n").points()
    assert [p.tp_size for p in both] == [1, 2]
    assert both[0].point_id() == plain[0].point_id()  # tp_size 1 hashes as before the field existed
    assert both[0].group_key() != both[1].group_key()
    assert "tp_size" in both[1].model_dump() and "tp_size" not in both[0].model_dump()
    with pytest.raises(ConfigError, match="line 7: tp_sizes"):
        parse_spec(base + "tp_sizes: [0]\n")


def test_llama_70b_shape_is_bundled_and_splits_over_8() -> None:
    from llm_energy.architectures import param_count
    from llm_energy.parallel import check_tp_shape

    arch = load_architecture("llama-3.1-70b")
    assert param_count(arch) == 70_553_706_496  # the published Llama-3.1-70B size
    for tp_size in (2, 4, 8):
        check_tp_shape(arch, tp_size)
    with pytest.raises(ConfigError, match="tp_size = 16 does not divide llama-3.1-70b's 8 key/value heads"):
        check_tp_shape(arch, 16)


# -- two real ranks over gloo -----------------------------------------------------------------


def test_tp2_greedy_tokens_equal_tp1_on_every_rank(tp2: TPEngine) -> None:
    batch = Batch(2, 8, 6)
    tp2.prepare(batch)
    assert tp2.generate() == 2 * 6
    ranks = tp2.rank_outputs()
    expected = _tp1_tokens(batch)
    assert len(ranks) == 2
    assert all(len(row) == 6 for row in expected)
    assert ranks[0] == expected
    assert ranks[1] == expected
    facts = tp2.describe()
    assert facts["tp_size"] == 2 and facts["tp_weights"] == "full" and facts["tp_devices"] == ["cpu", "cpu"]


def _measure(engine: TPEngine | HFEngine, indices: tuple[int, ...], batch: int, tp_size: int) -> RunResult:
    point = make_point(
        model="tiny",
        device="cpu",
        dtype="float32",
        batch_size=batch,
        input_len=8,
        output_len=4,
        tp_size=tp_size,
    )
    meter = _sim_meter(engine, indices)
    try:
        (result,) = run_point(engine, meter, point, env={}, options=RunOptions(target_window_s=0.3))
    finally:
        meter.close()
    assert result.status == "ok", result.error
    return result


def test_rank0_meter_measures_every_gpu_of_the_group(tp2: TPEngine) -> None:
    result = _measure(tp2, (0, 1), batch=2, tp_size=2)
    assert result.config["tp_size"] == 2
    for name in ("prefill", "decode", "total"):
        phase = result.phases[name]
        m = phase.measurement
        assert sorted(m.domains("gpu:")) == ["gpu:0", "gpu:1"]
        for i, power_w in POWER_W.items():
            domain = f"gpu:{i}"
            # Constant power: each GPU's energy is its power x the window, within the meter's bound.
            assert m.energy_j[domain] == pytest.approx(power_w * m.duration_s, abs=m.uncertainty_j[domain])
        assert phase.energy_j == pytest.approx(
            (m.energy_j["gpu:0"] + m.energy_j["gpu:1"]) / phase.repetitions
        )
    assert result.phases["decode"].tokens == 2 * 3


def test_a_second_group_in_the_same_process_is_refused(tp2: TPEngine) -> None:
    other = TPEngine(CPU, load_architecture("tiny"), tp_size=2, timeout_s=60)
    with pytest.raises(EngineError, match="one tensor-parallel group at a time"):
        other.load()
    other.close()
    tp2.prepare(Batch(1, 4, 3))
    assert tp2.generate() == 3  # the running group is untouched


def test_replicas_vs_tp_from_stored_runs(tp2: TPEngine, tmp_path: Path) -> None:
    single = HFEngine(CPU, load_architecture("tiny"))
    with Store(tmp_path / "runs.db") as store:
        store.write_run(_measure(single, (0,), batch=1, tp_size=1))
        store.write_run(_measure(tp2, (0, 1), batch=2, tp_size=2))
        runs = store.read_runs(status="ok")
    single.close()
    shape = {"model": "tiny", "gpus": 2, "input_len": 8, "output_len": 4, "dtype": "float32"}
    c = compare_replicas_tp(runs, total_batch=2, **shape)
    one = next(r for r in runs if r.config.get("tp_size", 1) == 1)
    total = one.phases["total"]
    # Two replicas: twice one TP-1 run's energy, at its latency.
    assert c.replicas.energy_j["total"] == pytest.approx(2 * total.energy_j)
    assert c.replicas.latency_s["total"] == pytest.approx(total.duration_s)
    assert c.tp.copies == 1 and sorted(c.tp.energy_per_gpu_j["total"]) == ["gpu:0", "gpu:1"]
    assert c.tp.energy_j["total"] == pytest.approx(sum(c.tp.energy_per_gpu_j["total"].values()))
    assert c.energy_ratio == pytest.approx(c.tp.energy_j["total"] / c.replicas.energy_j["total"])
    assert c.tp.energy_per_output_token_j == pytest.approx(c.tp.energy_j["total"] / (2 * 4))
    rows = comparison_table(runs, total_batches=[2, 4], **shape)
    json.dumps(rows)  # --json-able
    assert rows[0]["energy_ratio_tp_over_replicas"] == pytest.approx(c.energy_ratio)
    assert "tp_size 1, batch 2: measure it first" in rows[1]["missing"]
    with pytest.raises(ConfigError, match="total_batch = 3 does not split evenly over 2"):
        compare_replicas_tp(runs, total_batch=3, **shape)

    import llm_energy.cli.parallel  # noqa: F401 - registers `tp-compare` (until llm_energy.cli imports it)

    args = ["tp-compare", "--model", "tiny", "--gpus", "2", "--total-batch", "2", "--total-batch", "4"]
    args += ["--input-len", "8", "--output-len", "4", "--db", str(tmp_path / "runs.db")]
    shown = CliRunner().invoke(app, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)[0]["energy_ratio_tp_over_replicas"] == pytest.approx(c.energy_ratio)
    assert CliRunner().invoke(app, args).exit_code == 0
    uneven = CliRunner().invoke(app, [*args, "--gpus", "4", "--replica-tp", "2", "--json"])
    assert uneven.exit_code == 0  # batch 2 over 2 replicas of TP 2: no runs, a row that says so
    assert "tp_size 2, batch 1: measure it first" in json.loads(uneven.stdout)[0]["missing"]
    bad = CliRunner().invoke(app, [*args, "--gpus", "3", "--replica-tp", "2"])
    assert bad.exit_code == 2 and "replica_tp = 2" in bad.output

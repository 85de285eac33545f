"""GPU settings as an opt-in sweep axis and measure option: simulated engine and SimulatedGpu only.

Every test here runs with `XDG_STATE_HOME` in a temporary directory, so the recovery every CLI start
performs never sees (or leaves) a real restore file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.errors import ConfigError
from llm_energy.meters.simulated import SimClock, SimulatedGpu
from llm_energy.store import Store
from llm_energy.sweep import worker as worker_module
from llm_energy.sweep.spec import make_point, parse_spec
from llm_energy.sweep.sweep import run_sweep
from llm_energy.sweep.worker import GroupWorker, validate_points_gpu_settings

SPEC = """\
name: pl
models: [sim]
engines: [{engine: simulated}]
batch_sizes: [1, 4]
input_lens: [64]
output_lens: [8]
power_limits_w: [300, 700]
window_s: 1.0
idle_s: 0.5
"""


@pytest.fixture(autouse=True)
def _private_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[GroupWorker]:
    """Every GroupWorker opened during the test (to inspect its simulated GPU afterwards)."""
    opened: list[GroupWorker] = []
    original = GroupWorker.open

    def spy(self: GroupWorker) -> dict[str, object]:
        opened.append(self)
        return original(self)

    monkeypatch.setattr(GroupWorker, "open", spy)
    return opened


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _sweep(tmp_path: Path, text: str, *extra: str) -> tuple[int, str]:
    spec = _write(tmp_path, text)
    result = CliRunner().invoke(app, ["sweep", str(spec), "--db", str(tmp_path / "r.db"), *extra])
    return result.exit_code, result.output


def _count_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with Store(db) as store:
        return int(store.count_runs())


# --- point ids and the spec ------------------------------------------------------------------------


def test_a_point_without_settings_keeps_the_id_it_had_before_the_settings_fields():
    """The old rule, applied to the dump without the new fields, still gives the point's id."""
    point = make_point(model="sim", engine="simulated", batch_size=4, options={"max_batch_size": 16})
    old_fields = {
        "model": "sim",
        "engine": "simulated",
        "mode": "default",
        "batch_size": 4,
        "input_len": 512,
        "output_len": 128,
        "dtype": "bfloat16",
        "init": None,
        "seed": 0,
        "device": "cuda",
        "options": {"max_batch_size": 16},
    }
    blob = json.dumps(old_fields, sort_keys=True, separators=(",", ":"), default=str)
    assert point.point_id() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert point.model_dump() == {**old_fields, "device": "auto"}  # the default; hashed as cuda was
    assert point.point_id() == point.model_copy(update={"device": "cuda"}).point_id()


def test_settings_are_part_of_the_id_only_when_set():
    base = make_point(model="sim", engine="simulated")
    at_300 = make_point(model="sim", engine="simulated", power_limit_w=300)
    at_clock = make_point(model="sim", engine="simulated", gpu_clock_mhz=1410)
    assert len({base.point_id(), at_300.point_id(), at_clock.point_id()}) == 3
    assert at_300.model_dump()["power_limit_w"] == 300.0
    assert "gpu_clock_mhz" not in at_300.model_dump()
    assert at_300.point_id() == make_point(model="sim", engine="simulated", power_limit_w=300.0).point_id()


def test_settings_axes_multiply_the_grid_and_vary_fastest():
    spec = parse_spec(
        SPEC.replace("power_limits_w: [300, 700]", "power_limits_w: [700, 300]\ngpu_clocks_mhz: [1410]")
    )
    points = spec.points()
    assert [(p.batch_size, p.gpu_clock_mhz, p.power_limit_w) for p in points] == [
        (1, 1410, 300.0),
        (1, 1410, 700.0),
        (4, 1410, 300.0),
        (4, 1410, 700.0),
    ]
    assert len({p.point_id() for p in points}) == 4
    assert len({p.group_key() for p in points}) == 1  # one loaded model, settings change per point


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("power_limits_w: []", r"line 7: power_limits_w: .*at least 1"),
        ("power_limits_w: [0]", r"line 7: power_limits_w: .*> 0"),
        ("power_limits_w: [x]", r"line 7: power_limits_w.0: .*number"),
    ],
)
def test_bad_settings_axes_name_field_and_line(patch, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_spec(SPEC.replace("power_limits_w: [300, 700]", patch))


def test_settings_need_a_gpu_and_real_gpus_come_from_the_factory():
    """A real engine's point is checked on the GPU its device names; on the CPU it is refused."""
    opened: list[int] = []

    def factory(index: int) -> SimulatedGpu:
        opened.append(index)
        return SimulatedGpu(SimClock(), index=index)

    point = make_point(model="tiny", engine="hf", device="cuda:1", input_len=16, output_len=4)
    validate_points_gpu_settings(
        [point.model_copy(update={"power_limit_w": 300.0})], allow=True, gpu_factory=factory
    )
    assert opened == [1]
    with pytest.raises(ConfigError, match="need a GPU"):
        validate_points_gpu_settings(
            [point.model_copy(update={"device": "cpu", "power_limit_w": 300.0})],
            allow=True,
            gpu_factory=factory,
        )


# --- sweeps ----------------------------------------------------------------------------------------


def test_power_limit_sweep_stores_settings_and_restores_the_gpu(tmp_store, workers):
    """Runs carry config.gpu_settings and the readback; energy drops at 300 W; the GPU ends at default."""
    summary = run_sweep(parse_spec(SPEC), tmp_store, allow_gpu_settings=True)
    assert (summary.measured, summary.ok, summary.error) == (4, 4, 0)
    runs = tmp_store.read_runs()
    assert {r.config["gpu_settings"]["power_limit_w"] for r in runs} == {300.0, 700.0}
    for r in runs:
        assert r.config["gpu_settings"] == {"sm_clock_mhz": None, "power_limit_w": r.config["power_limit_w"]}
        assert r.env["gpu_settings_readback"] == [
            {"gpu_index": 0, "power_limit_w": r.config["power_limit_w"]}
        ]
        assert r.env["power_limit_w"] == 700.0  # the environment as found, so env_id is the same for all
    for batch_size in (1, 4):
        energy = {
            r.config["power_limit_w"]: r.phases["total"].measurement.energy_sum_j("gpu:")
            / r.phases["total"].repetitions
            for r in runs
            if r.config["batch_size"] == batch_size
        }
        assert energy[300.0] < energy[700.0]
    assert len(workers) == 1
    gpu = workers[0].settable_gpus[0] if workers[0].settable_gpus else None
    assert isinstance(gpu, SimulatedGpu)
    assert gpu.power_limit_w == gpu.default_power_limit_w == 700.0
    assert gpu.locked_sm_clocks_mhz is None


def test_clock_axis_locks_and_unlocks_the_simulated_gpu(tmp_store, workers):
    spec = parse_spec(SPEC.replace("power_limits_w: [300, 700]", "gpu_clocks_mhz: [990, 1410]"))
    run_sweep(spec, tmp_store, allow_gpu_settings=True)
    runs = tmp_store.read_runs()
    assert sorted(r.env["gpu_settings_readback"][0]["locked_sm_clocks_mhz"][0] for r in runs) == [
        990,
        990,
        1410,
        1410,
    ]
    assert {r.config["gpu_settings"]["power_limit_w"] for r in runs} == {None}
    assert workers[0].settable_gpus is not None
    assert workers[0].settable_gpus[0].current_locked_sm_clocks_mhz() is None


def test_sweep_without_consent_exits_2_and_stores_nothing(tmp_path):
    code, output = _sweep(tmp_path, SPEC)
    assert code == 2
    assert "shared and must stay as they are" in output
    assert "--allow-gpu-settings" in output
    assert _count_runs(tmp_path / "r.db") == 0
    with pytest.raises(ConfigError, match="shared and must stay as they are"):
        run_sweep(parse_spec(SPEC), Store(tmp_path / "api.db"))
    assert _count_runs(tmp_path / "api.db") == 0


def test_allow_gpu_settings_in_the_spec_is_consent(tmp_path):
    code, output = _sweep(tmp_path, SPEC + "allow_gpu_settings: true\n")
    assert code == 0, output
    assert _count_runs(tmp_path / "r.db") == 4


def test_unsupported_clock_exits_2_naming_it_and_stores_nothing(tmp_path, workers):
    bad = SPEC.replace("power_limits_w: [300, 700]", "gpu_clocks_mhz: [1410, 1234]")
    code, output = _sweep(tmp_path, bad, "--allow-gpu-settings")
    assert code == 2
    assert "gpu_clock_mhz=1234" in output
    assert _count_runs(tmp_path / "r.db") == 0
    assert workers == []  # nothing was loaded or measured
    with pytest.raises(ConfigError, match="power_limit_w=800"):
        run_sweep(
            parse_spec(SPEC.replace("[300, 700]", "[300, 800]")),
            Store(tmp_path / "api.db"),
            allow_gpu_settings=True,
        )
    assert _count_runs(tmp_path / "api.db") == 0


def test_resume_skips_every_point_of_a_settings_sweep(tmp_path):
    code, output = _sweep(tmp_path, SPEC, "--allow-gpu-settings")
    assert code == 0, output
    assert "4 measured" in output
    code, output = _sweep(tmp_path, SPEC, "--allow-gpu-settings")
    assert code == 0, output
    assert "0 measured" in output and "4 already stored" in output
    assert _count_runs(tmp_path / "r.db") == 4


def test_dry_run_lists_the_settings(tmp_path):
    code, output = _sweep(tmp_path, SPEC, "--dry-run")
    assert code == 0, output
    assert "4 points" in output
    assert "needs `allow_gpu_settings: true`" in output


# --- measure ---------------------------------------------------------------------------------------

MEASURE = [
    "measure",
    "--engine",
    "simulated",
    "--model",
    "sim",
    "--input-len",
    "64",
    "--output-len",
    "8",
    "--window-s",
    "1",
    "--idle-s",
    "0.5",
    "--json",
]


def test_measure_with_a_power_limit_records_it_and_restores(tmp_path, workers):
    db = tmp_path / "r.db"
    result = CliRunner().invoke(
        app, [*MEASURE, "--db", str(db), "--power-limit-w", "300", "--allow-gpu-settings"]
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)[0]
    assert run["config"]["gpu_settings"] == {"sm_clock_mhz": None, "power_limit_w": 300.0}
    assert workers[0].settable_gpus is not None
    assert workers[0].settable_gpus[0].current_power_limit_w() == 700.0
    with Store(db) as store:
        assert store.read_runs()[0].env["gpu_settings_readback"][0]["power_limit_w"] == 300.0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--power-limit-w", "300"], "shared and must stay as they are"),
        (["--gpu-clock-mhz", "1234", "--allow-gpu-settings"], "gpu_clock_mhz=1234"),
        (["--power-limit-w", "800", "--allow-gpu-settings"], "power_limit_w=800"),
    ],
)
def test_measure_refuses_bad_settings_with_exit_2_and_stores_nothing(tmp_path, args, expected):
    db = tmp_path / "r.db"
    result = CliRunner().invoke(app, [*MEASURE, "--db", str(db), *args])
    assert result.exit_code == 2
    assert expected in result.output
    assert _count_runs(db) == 0


# --- recovery at start -----------------------------------------------------------------------------


def test_cli_start_recovers_settings_a_dead_run_left(tmp_path, monkeypatch, _private_state_home):
    """A restore file from a dead pid is restored through the GPU factory, then removed."""
    gpu = SimulatedGpu(
        SimClock(), power_limit_w=300.0, default_power_limit_w=700.0, locked_sm_clocks_mhz=(990, 990)
    )
    monkeypatch.setattr(worker_module, "settable_gpu", lambda index: gpu)
    restore = _private_state_home / "llm-energy" / "gpu-restore.json"
    restore.parent.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    restore.write_text(
        json.dumps(
            {
                "format": 1,
                "pid": int(dead.stdout),
                "timestamp": "2025-01-01T00:00:00+00:00",
                "settings": {"sm_clock_mhz": 990, "power_limit_w": 300.0},
                "gpus": [
                    {
                        "gpu_index": 0,
                        "uuid": gpu.uuid(),
                        "original": {"locked_sm_clocks_mhz": None, "power_limit_w": 700.0},
                    }
                ],
            }
        )
    )
    result = CliRunner().invoke(app, [*MEASURE, "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 0, result.output
    assert not restore.exists()
    assert gpu.power_limit_w == 700.0
    assert gpu.locked_sm_clocks_mhz is None


def test_cli_start_without_restore_file_imports_no_gpu_library(tmp_path):
    """No restore file: the recovery at start opens no GPU and imports neither Zeus nor NVML."""
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from llm_energy.cli import app\n"
        f"r = CliRunner().invoke(app, {[*MEASURE, '--db', str(tmp_path / 'r.db')]!r})\n"
        "print(json.dumps([r.exit_code, [m for m in ('zeus', 'pynvml', 'amdsmi') if m in sys.modules]]))\n"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [0, []]

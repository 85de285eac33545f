"""GPU clock / power-limit changes are refused, validated, and always restored: on the simulated GPU only.

The crash and SIGTERM cases run this file as a child process (`python test_settings.py MODE ...`)
with a `PersistedGpu`, a `SimulatedGpu` whose settings live in a JSON file, so they outlive the
process the way a real GPU's settings do.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_energy.control import (
    GpuSettings,
    SettableGpu,
    apply_gpu_settings,
    default_restore_file,
    recover_from_restore_file,
)
from llm_energy.errors import ConfigError, GpuSettingsError
from llm_energy.meters.simulated import SimClock, SimulatedGpu

CLOCK = GpuSettings(sm_clock_mhz=1410)
BOTH = GpuSettings(sm_clock_mhz=1410, power_limit_w=500.0)


class PersistedGpu(SimulatedGpu):
    """A simulated GPU whose settings are kept in `state_file` (JSON), so they survive a crash."""

    def __init__(self, state_file: Path, index: int = 0) -> None:
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        locked = state.get("locked_sm_clocks_mhz")
        super().__init__(
            SimClock(),
            index=index,
            power_limit_w=state.get("power_limit_w", 700.0),
            default_power_limit_w=700.0,
            locked_sm_clocks_mhz=tuple(locked) if locked else None,
        )
        self.state_file = state_file
        self._save()

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        locked = self.locked_sm_clocks_mhz
        tmp.write_text(
            json.dumps(
                {
                    "locked_sm_clocks_mhz": list(locked) if locked else None,
                    "power_limit_w": self.power_limit_w,
                }
            )
        )
        os.replace(tmp, self.state_file)

    def set_locked_sm_clock_mhz(self, min_mhz: int, max_mhz: int) -> None:
        super().set_locked_sm_clock_mhz(min_mhz, max_mhz)
        self._save()

    def reset_locked_sm_clocks(self) -> None:
        super().reset_locked_sm_clocks()
        self._save()

    def set_power_limit_w(self, power_limit_w: float) -> None:
        super().set_power_limit_w(power_limit_w)
        self._save()

    def reset_power_limit(self) -> None:
        super().reset_power_limit()
        self._save()


def _state(state_file: Path) -> dict:
    return json.loads(state_file.read_text())


UNCHANGED = {"locked_sm_clocks_mhz": None, "power_limit_w": 700.0}


@pytest.fixture
def gpu() -> SimulatedGpu:
    return SimulatedGpu(SimClock(), power_limit_w=700.0)


@pytest.fixture
def restore_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "llm-energy" / "gpu-restore.json"


def _unchanged(gpu: SimulatedGpu) -> bool:
    return gpu.current_locked_sm_clocks_mhz() is None and gpu.current_power_limit_w() == 700.0


def test_simulated_gpu_is_a_settable_gpu(gpu):
    assert isinstance(gpu, SettableGpu)
    clocks = gpu.supported_sm_clocks_mhz()
    assert (clocks[0], clocks[-1], clocks[1] - clocks[0]) == (345, 1980, 15)
    assert gpu.power_limit_range_w() == (200.0, 700.0)


def test_default_restore_file_follows_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_restore_file() == tmp_path / "llm-energy" / "gpu-restore.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        default_restore_file() == tmp_path / "home" / ".local" / "state" / "llm-energy" / "gpu-restore.json"
    )


def test_refused_without_allow(gpu, restore_file):
    with (
        pytest.raises(ConfigError, match=r"--allow-gpu-settings.*shared must not be changed"),
        apply_gpu_settings(gpu, BOTH, allow=False, restore_file=restore_file),
    ):
        pytest.fail("the block must not run")
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_refused_without_privilege(restore_file):
    gpu = SimulatedGpu(SimClock(), settings_privilege=False)
    with (
        pytest.raises(ConfigError, match="no privilege"),
        apply_gpu_settings(gpu, CLOCK, allow=True, restore_file=restore_file),
    ):
        pytest.fail("the block must not run")
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_empty_settings_change_nothing_and_need_no_consent(gpu, restore_file):
    with apply_gpu_settings(gpu, GpuSettings(), allow=False, restore_file=restore_file):
        assert not restore_file.exists()
    assert _unchanged(gpu)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (GpuSettings(sm_clock_mhz=1000), r"gpu_clock_mhz=1000 .*345–1980 MHz in 15 MHz steps.*\[990, 1005\]"),
        (GpuSettings(sm_clock_mhz=2100), r"gpu_clock_mhz=2100 .*345–1980 MHz"),
        (GpuSettings(power_limit_w=150), r"power_limit_w=150 .*200–700 W"),
        (GpuSettings(sm_clock_mhz=1410, power_limit_w=800), r"power_limit_w=800 .*200–700 W"),
    ],
)
def test_invalid_values_are_refused_before_anything_changes(gpu, restore_file, settings, match):
    with (
        pytest.raises(ConfigError, match=match),
        apply_gpu_settings(gpu, settings, allow=True, restore_file=restore_file),
    ):
        pytest.fail("the block must not run")
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_normal_exit_restores_and_removes_the_file(gpu, restore_file):
    with apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file):
        assert gpu.current_locked_sm_clocks_mhz() == (1410, 1410)
        assert gpu.current_power_limit_w() == 500.0
        content = json.loads(restore_file.read_text())
        assert content["pid"] == os.getpid()
        assert content["timestamp"]
        assert content["settings"] == {"sm_clock_mhz": 1410, "power_limit_w": 500.0}
        assert content["gpus"] == [{"gpu_index": 0, "uuid": "GPU-simulated-0", "original": UNCHANGED}]
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_only_the_changed_setting_is_recorded_and_restored(restore_file):
    """A clock lock set by someone else survives a power-limit-only run; their power limit is kept exactly."""
    gpu = SimulatedGpu(
        SimClock(), power_limit_w=600.0, default_power_limit_w=700.0, locked_sm_clocks_mhz=(990, 990)
    )
    with apply_gpu_settings(gpu, GpuSettings(power_limit_w=400.0), allow=True, restore_file=restore_file):
        assert json.loads(restore_file.read_text())["gpus"][0]["original"] == {"power_limit_w": 600.0}
        assert gpu.current_power_limit_w() == 400.0
    assert gpu.current_power_limit_w() == 600.0  # not the 700 W default
    assert gpu.current_locked_sm_clocks_mhz() == (990, 990)


def test_several_gpus_are_changed_and_restored_together(restore_file):
    gpus = [SimulatedGpu(SimClock(), index=i) for i in range(2)]
    with apply_gpu_settings(gpus, BOTH, allow=True, restore_file=restore_file):
        assert [g.current_locked_sm_clocks_mhz() for g in gpus] == [(1410, 1410)] * 2
        assert [e["gpu_index"] for e in json.loads(restore_file.read_text())["gpus"]] == [0, 1]
    assert all(_unchanged(g) for g in gpus)
    assert not restore_file.exists()


def test_exception_inside_restores_and_propagates(gpu, restore_file):
    with (
        pytest.raises(RuntimeError, match="workload failed"),
        apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file),
    ):
        raise RuntimeError("workload failed")
    assert _unchanged(gpu)
    assert not restore_file.exists()


@pytest.mark.parametrize("after", [0, 1], ids=["first-set-fails", "second-set-fails"])
def test_failed_set_leaves_nothing_changed_and_removes_the_file(gpu, restore_file, after):
    gpu.inject_setting_fault("set", after=after)
    with (
        pytest.raises(GpuSettingsError, match="set of .* failed"),
        apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file),
    ):
        pytest.fail("the block must not run")
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_failed_restore_is_loud_and_keeps_the_file(gpu, restore_file, caplog):
    gpu.inject_setting_fault("restore")
    with (
        caplog.at_level(logging.ERROR, logger="llm_energy.control.base"),
        pytest.raises(
            GpuSettingsError,
            match=rf"FAILED TO RESTORE.*{restore_file.name}.*nvidia-smi -i GPU-simulated-0 -rgc",
        ),
        apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file),
    ):
        pass
    assert "FAILED TO RESTORE" in caplog.text
    assert gpu.current_locked_sm_clocks_mhz() == (1410, 1410)  # the clock reset failed
    assert gpu.current_power_limit_w() == 700.0  # the power limit was still restored
    content = json.loads(restore_file.read_text())
    assert content["gpus"][0]["original"] == UNCHANGED
    # The next start (here: the same process, the block being over) repairs it from the file.
    assert recover_from_restore_file(lambda i: gpu, restore_file) is True
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_failed_restore_after_an_exception_keeps_both_errors(gpu, restore_file):
    gpu.inject_setting_fault("restore")
    with (
        pytest.raises(GpuSettingsError) as info,
        apply_gpu_settings(gpu, CLOCK, allow=True, restore_file=restore_file),
    ):
        raise RuntimeError("workload failed")
    assert isinstance(info.value.__context__, RuntimeError)
    assert restore_file.exists()


def test_a_second_change_is_refused_while_a_restore_file_exists(gpu, restore_file):
    with apply_gpu_settings(gpu, CLOCK, allow=True, restore_file=restore_file):
        with (
            pytest.raises(GpuSettingsError, match="already changing GPU settings"),
            apply_gpu_settings(gpu, GpuSettings(sm_clock_mhz=990), allow=True, restore_file=restore_file),
        ):
            pytest.fail("the block must not run")
        assert gpu.current_locked_sm_clocks_mhz() == (1410, 1410)
        # recovery at a start never touches a block that is running in this process
        assert recover_from_restore_file(lambda i: gpu, restore_file) is False
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_sigint_inside_the_block_restores_and_puts_back_the_handler(gpu, restore_file):
    before = signal.getsignal(signal.SIGINT)
    with (
        pytest.raises(KeyboardInterrupt),
        apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file),
    ):
        assert signal.getsignal(signal.SIGINT) is not before
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # interrupted at once
        pytest.fail("SIGINT must end the block")
    assert _unchanged(gpu)
    assert not restore_file.exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_during_the_restore_waits_for_it(restore_file):
    """SIGINT arriving mid-restore does not cut it short: the restore finishes, then the interrupt."""

    class InterruptedGpu(SimulatedGpu):
        def reset_locked_sm_clocks(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs here and must defer
            super().reset_locked_sm_clocks()

    gpu = InterruptedGpu(SimClock())
    with (
        pytest.raises(KeyboardInterrupt),
        apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file),
    ):
        pass
    assert _unchanged(gpu)
    assert not restore_file.exists()


def test_recover_without_a_file_does_nothing(restore_file):
    assert recover_from_restore_file(lambda i: pytest.fail("no GPU needed"), restore_file) is False


def _write_left_file(restore_file: Path, pid: int, uuid: str = "GPU-simulated-0") -> None:
    restore_file.parent.mkdir(parents=True, exist_ok=True)
    restore_file.write_text(
        json.dumps(
            {
                "format": 1,
                "pid": pid,
                "timestamp": "2025-01-01T00:00:00+00:00",
                "settings": {"sm_clock_mhz": 1410, "power_limit_w": 500.0},
                "gpus": [{"gpu_index": 0, "uuid": uuid, "original": UNCHANGED}],
            }
        )
    )


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return int(child.stdout)


def test_a_left_file_blocks_new_changes_until_recovered(gpu, restore_file):
    _write_left_file(restore_file, _dead_pid())
    with (
        pytest.raises(GpuSettingsError, match="did not restore its GPU settings"),
        apply_gpu_settings(gpu, CLOCK, allow=True, restore_file=restore_file),
    ):
        pytest.fail("the block must not run")
    assert restore_file.exists()


def test_recover_leaves_a_running_owner_alone(gpu, restore_file):
    _write_left_file(restore_file, os.getppid())
    gpu.set_locked_sm_clock_mhz(1410, 1410)
    assert recover_from_restore_file(lambda i: gpu, restore_file) is False
    assert gpu.current_locked_sm_clocks_mhz() == (1410, 1410)
    assert restore_file.exists()


def test_recover_refuses_another_gpu_under_the_same_index(gpu, restore_file):
    _write_left_file(restore_file, _dead_pid(), uuid="GPU-some-other-one")
    gpu.set_locked_sm_clock_mhz(1410, 1410)
    with pytest.raises(GpuSettingsError, match="CUDA_VISIBLE_DEVICES changed"):
        recover_from_restore_file(lambda i: gpu, restore_file)
    assert gpu.current_locked_sm_clocks_mhz() == (1410, 1410)
    assert restore_file.exists()


def test_recover_failure_is_loud_and_keeps_the_file(gpu, restore_file):
    _write_left_file(restore_file, _dead_pid())
    gpu.set_locked_sm_clock_mhz(1410, 1410)
    gpu.inject_setting_fault("restore")
    with pytest.raises(GpuSettingsError, match="FAILED TO RESTORE GPU SETTINGS left by run pid"):
        recover_from_restore_file(lambda i: gpu, restore_file)
    assert restore_file.exists()


@pytest.mark.parametrize(
    "text", ["{not json", '{"format": 1, "pid": 1, "gpus": [{"gpu_index": 0}]}', '{"format": 99, "gpus": []}']
)
def test_recover_unreadable_file_is_an_error(restore_file, text):
    restore_file.parent.mkdir(parents=True)
    restore_file.write_text(text)
    with pytest.raises(GpuSettingsError, match="unreadable"):
        recover_from_restore_file(lambda i: pytest.fail("no GPU needed"), restore_file)
    assert restore_file.exists()


def _run_child(mode: str, state_file: Path, restore_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, __file__, mode, str(state_file), str(restore_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_crash_between_set_and_restore_is_repaired_at_the_next_start(tmp_path, restore_file):
    state_file = tmp_path / "gpu-state.json"
    child = _run_child("crash", state_file, restore_file)
    assert child.returncode == 3, child.stderr
    # The GPU is left changed, and the file says how to undo it.
    assert _state(state_file) == {"locked_sm_clocks_mhz": [1410, 1410], "power_limit_w": 500.0}
    content = json.loads(restore_file.read_text())
    assert content["gpus"][0]["original"] == UNCHANGED
    assert content["pid"] != os.getpid()

    assert recover_from_restore_file(lambda i: PersistedGpu(state_file, i), restore_file) is True
    assert _state(state_file) == UNCHANGED
    assert not restore_file.exists()
    assert recover_from_restore_file(lambda i: PersistedGpu(state_file, i), restore_file) is False


def test_sigterm_inside_the_block_restores(tmp_path, restore_file):
    state_file = tmp_path / "gpu-state.json"
    child = _run_child("sigterm", state_file, restore_file)
    assert child.returncode == 128 + signal.SIGTERM, child.stderr
    assert "handler put back" in child.stdout
    assert "not interrupted" not in child.stdout
    assert _state(state_file) == UNCHANGED
    assert not restore_file.exists()


def _child(mode: str, state_file: Path, restore_file: Path) -> None:
    gpu = PersistedGpu(state_file)
    if mode == "crash":
        with apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file):
            os._exit(3)  # no finally, no handlers: like SIGKILL or a power cut
    elif mode == "sigterm":
        try:
            with apply_gpu_settings(gpu, BOTH, allow=True, restore_file=restore_file):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)
                print("not interrupted")
        except SystemExit:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                print("handler put back", flush=True)
            raise


if __name__ == "__main__":
    _child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))

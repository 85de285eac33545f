"""A `GroupWorker` measures the points of one group with the model loaded once.

A group shares model, engine, mode and options. Executors drive it in-process (local) or
inside a Ray actor (one per group, on a GPU).

It never writes the store: results go back to the caller, which alone writes, so resuming works the
same whichever executor ran the points.

A point that sets `gpu_clock_mhz` / `power_limit_w` is measured inside `apply_gpu_settings` on the
group's settable GPU (`ZeusSettableGpu` on real GPUs, the worker's own `SimulatedGpu` for the
simulated engine), so the GPU is back as it was after every point; idle power and model load happen
at the GPU's own settings. The settings are checked against the GPU when the group opens, before
anything is measured.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_energy.engines import engine_descriptor
from llm_energy.engines.base import Engine
from llm_energy.engines.devices import cuda_index, resolve_device
from llm_energy.errors import ConfigError, GpuSettingsError
from llm_energy.meters.base import Clock, CpuDevice, EnergyMeter, GpuDevice
from llm_energy.records import Measurement, RunResult
from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import SHARED_GPU_NOTE, Point

if TYPE_CHECKING:
    from llm_energy.control.base import GpuSettings, SettableGpu
    from llm_energy.meters.simulated import SimClock, SimulatedGpu

logger = logging.getLogger(__name__)

GpuFactory = Callable[[int], "SettableGpu"]
"""Returns the settable GPU with a given index (CUDA_VISIBLE_DEVICES order)."""


def settable_gpu(index: int) -> SettableGpu:
    """Open real GPU `index` for settings through Zeus (imports Zeus/NVML only now)."""
    from llm_energy.control.zeus import ZeusSettableGpu

    return ZeusSettableGpu(index)


def recover_gpu_settings(gpu_factory: GpuFactory | None = None, restore_file: Path | None = None) -> bool:
    """Restore GPU settings left changed by an earlier run that died; call at every start.

    Opens a GPU (and imports Zeus/NVML) only when a restore file exists.

    Returns:
        True if settings were restored.

    Raises:
        GpuSettingsError: the restore failed; the restore file is kept (see `recover_from_restore_file`).
    """
    from llm_energy.control.base import recover_from_restore_file

    return recover_from_restore_file(gpu_factory or settable_gpu, restore_file)


def new_simulated_gpu(clock: SimClock) -> SimulatedGpu:
    """The simulated engine's GPU: idle at 70 W, H100-like clocks and power-limit range (200–700 W)."""
    from llm_energy.meters.simulated import PowerTrace, SimulatedGpu

    return SimulatedGpu(clock, PowerTrace.constant(70.0))


def point_gpu_settings(point: Point) -> GpuSettings:
    """Return the GPU settings `point` asks for (`changes_nothing` when none)."""
    from llm_energy.control.base import GpuSettings

    return GpuSettings(sm_clock_mhz=point.gpu_clock_mhz, power_limit_w=point.power_limit_w)


def gpu_index_of(point: Point, device: str | None = None) -> int:
    """Return the index of the GPU `point` runs on (`cuda:N` → N, `cuda` / `auto` → 0).

    Raises:
        ConfigError: the point sets GPU settings but runs on the CPU.
    """
    device = device or point.device
    if device == "cpu":
        raise ConfigError(
            f"gpu_clock_mhz / power_limit_w need a GPU, but {point.model} {point.engine} runs on the CPU"
        )
    return cuda_index(device)


def local_devices(
    device: str, *, probe_update_period: bool = True, cpu_tdp_w: float | None = None, count: int = 1
) -> tuple[list[GpuDevice], list[CpuDevice], list[str]]:
    """Return (GPUs, CPU meters, notes) that measure a point on `device` here.

    The GPUs are the ones the point runs on: `count` of them from `device`'s index on (a
    tensor-parallel group), none on the CPU. Shared by the worker and by resume decisions, so both see
    the same environment.
    """
    from llm_energy.meters import detect_cpus, detect_gpus

    gpus, notes = detect_gpus(probe_update_period=probe_update_period) if device != "cpu" else ([], [])
    index = cuda_index(device)
    cpus, cpu_notes = detect_cpus(tdp_w=cpu_tdp_w)
    return [g for g in gpus if index <= g.index < index + count], cpus, notes + cpu_notes


def check_gpu_settings(gpu: SettableGpu, settings: GpuSettings, *, allow: bool) -> None:
    """Check consent, privilege and every value against `gpu`, changing nothing.

    Raises:
        ConfigError: not allowed, no privilege, or a value the GPU does not support (named).
    """
    from llm_energy.control.base import validate_gpu_settings

    if settings.changes_nothing:
        return
    if not allow:
        raise ConfigError(
            f"changing GPU settings ({settings.to_dict()}) needs --allow-gpu-settings; {SHARED_GPU_NOTE}"
        )
    if not gpu.has_settings_privilege():
        raise ConfigError(
            f"no privilege to change the settings of gpu:{gpu.index} (needs root / CAP_SYS_ADMIN or a Zeus "
            "daemon); nothing changed"
        )
    validate_gpu_settings(gpu, settings)


def validate_points_gpu_settings(
    points: Sequence[Point], *, allow: bool, gpu_factory: GpuFactory | None = None
) -> None:
    """Check every point's GPU settings against its GPU before anything is measured.

    The simulated engine's points are checked against a fresh simulated GPU (the one its worker
    uses has the same ranges); real GPUs are opened through `gpu_factory` (Zeus), once each.

    Raises:
        ConfigError: not allowed, no privilege, a point on the CPU, or an unsupported value.
        GpuSettingsError: a real GPU cannot be opened.
    """
    from llm_energy.meters.simulated import SimClock

    gpus: dict[int | None, SettableGpu] = {}
    for point in points:
        settings = point_gpu_settings(point)
        if settings.changes_nothing:
            continue
        index = None if engine_descriptor(point.engine).simulated else gpu_index_of(point)
        if index not in gpus:
            gpus[index] = (
                new_simulated_gpu(SimClock()) if index is None else (gpu_factory or settable_gpu)(index)
            )
        check_gpu_settings(gpus[index], settings, allow=allow)


def _readback(gpus: Sequence[SettableGpu]) -> list[dict[str, Any]]:
    """Read back what the GPUs report now (what can be read: NVML has no locked-clock query)."""
    out: list[dict[str, Any]] = []
    for gpu in gpus:
        entry: dict[str, Any] = {"gpu_index": gpu.index}
        try:
            entry["power_limit_w"] = gpu.current_power_limit_w()
        except GpuSettingsError as exc:
            logger.info("gpu:%d power limit not readable: %s", gpu.index, exc)
        locked = gpu.current_locked_sm_clocks_mhz()
        if locked is not None:
            entry["locked_sm_clocks_mhz"] = list(locked)
        out.append(entry)
    return out


class GroupWorker:
    """Loads one group's model once and measures its points one by one.

    Args:
        first: Any point of the group (its model, engine, mode, options define the group).
        options: How each point is measured.
        idle_s: Seconds of idle power measured once, before loading.
        sweep_name: Stored in every run's config.
        cpu_tdp_w: TDP for the CPU estimate where no RAPL counter is readable.
        on_status: Called with short progress messages (the CLI shows them).
    """

    def __init__(
        self,
        first: Point,
        options: RunOptions,
        *,
        idle_s: float = 2.0,
        sweep_name: str = "",
        cpu_tdp_w: float | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.first = first
        self.cpu_tdp_w = cpu_tdp_w
        self.say: Callable[[str], None] = on_status or (lambda _msg: None)
        self.options = options
        self.idle_s = idle_s
        self.sweep_name = sweep_name
        self.engine: Engine | None = None
        self.meter: EnergyMeter | None = None
        self.env: dict[str, Any] = {}
        self.idle: Measurement | None = None
        self.load_s = 0.0
        self.clock: Clock = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.effective: dict[str, Any] = {}
        """Device and dtype as resolved on this machine (recorded in each run's config)."""
        self.gpu_factory: GpuFactory | None = None
        """Opens a real GPU for settings (default: `settable_gpu`, Zeus)."""
        self.settable_gpus: list[SettableGpu] | None = None
        """The GPUs whose settings points change (the simulated GPU, or opened on first need)."""
        self._restore_dir: str | None = None

    def open(self) -> dict[str, Any]:
        """Detect devices, measure idle power, build and load the engine; return the environment."""
        from llm_energy.env import collect_env

        if engine_descriptor(self.first.engine).simulated:
            self._open_simulated()
        else:
            from llm_energy.architectures import load_architecture
            from llm_energy.engines import build_engine, check_installed

            p = self.first
            check_installed(p.engine)  # a missing extra is named before anything is measured
            device = resolve_device(p.device)
            self.effective = {"device": device, "dtype": p.dtype if device != "cpu" else "float32"}
            if device.startswith("cuda"):
                self.say("probing GPU energy counters")
            arch = load_architecture(p.model)
            fields: dict[str, Any] = {
                "mode": p.mode,
                "device": device,
                "dtype": self.effective["dtype"],  # float32 on CPU: bf16 matmuls are slow on most CPUs
                "init": p.init,
                "seed": p.seed,
                **p.options,
            }
            # With tp_size > 1, rank 0 of a TP group (checks the visible GPUs); its meter measures every
            # GPU of the group.
            self.engine = build_engine(p.engine, arch, tp_size=p.tp_size, **fields)
            gpus, cpus, notes = local_devices(device, cpu_tdp_w=self.cpu_tdp_w, count=p.tp_size)
            self.env = collect_env(gpus, cpus, notes, packages=engine_descriptor(p.engine).packages)
            self.meter = EnergyMeter(gpus, cpus, sync=self.engine.synchronize)
        assert self.meter is not None and self.engine is not None
        settings = point_gpu_settings(self.first)
        if not settings.changes_nothing:  # bad input fails here, before idle, load and any measurement
            check_gpu_settings(
                self._settable_gpus(self.first)[0], settings, allow=self.options.allow_gpu_settings
            )
        self.say(f"measuring idle power for {self.idle_s:.0f} s")
        self.idle = self.meter.measure_idle(self.idle_s, sleep=self.sleep)
        self.say(f"loading {self.first.model}")
        t0 = self.clock()
        self.engine.load()
        self.load_s = self.clock() - t0
        return self.env

    def _open_simulated(self) -> None:
        """Open an engine that runs on simulated devices: a fresh clock and GPU, passed to it."""
        from llm_energy.engines import engine_class
        from llm_energy.env import collect_env
        from llm_energy.meters.simulated import SimClock

        clock = SimClock()
        gpu = new_simulated_gpu(clock)
        self.clock = clock
        self.sleep = clock.advance
        cls = engine_class(self.first.engine)
        self.engine = cls(cls.Config(**self.first.options), clock, [gpu])
        self.meter = EnergyMeter([gpu], clock=clock)
        self.env = collect_env([gpu])
        self.settable_gpus = [gpu]

    def _settable_gpus(self, point: Point) -> list[SettableGpu]:
        """The GPUs `point`'s settings apply to; a real one is opened (and recovered) on first need."""
        if self.settable_gpus is None:
            index = gpu_index_of(point, self.effective.get("device"))
            factory = self.gpu_factory or settable_gpu
            recover_gpu_settings(factory)  # e.g. a Ray worker killed mid-point left its settings
            self.settable_gpus = [factory(index)]
        return self.settable_gpus

    def _restore_file(self) -> Path | None:
        """Where originals are kept: the per-user default for real GPUs, a private file when simulated.

        The simulated GPU's settings die with the process, so its restore file must never be the real
        one (a crashed test would otherwise send the next start's recovery to a real GPU).
        """
        if not engine_descriptor(self.first.engine).simulated:
            return None
        if self._restore_dir is None:
            self._restore_dir = tempfile.mkdtemp(prefix="llm-energy-simgpu-")
        return Path(self._restore_dir) / "gpu-restore.json"

    def run(self, point: Point) -> list[RunResult]:
        """Measure `point` (failures come back as `oom` / `error` results, never as exceptions).

        A point with GPU settings runs inside `apply_gpu_settings`: set, measured, restored. Its runs
        record the settings in `config.gpu_settings` and what the GPU reported during the run in
        `env.gpu_settings_readback`.

        Raises:
            ConfigError: settings not allowed, no privilege, or an unsupported value (nothing changed).
            GpuSettingsError: a setting could not be applied, or restored (see `apply_gpu_settings`).
        """
        from llm_energy.control.base import apply_gpu_settings

        if self.engine is None or self.meter is None:
            self.open()
        assert self.engine is not None and self.meter is not None
        settings = point_gpu_settings(point)
        if settings.changes_nothing:
            results = self._measure(point, self.env)
        else:
            gpus = self._settable_gpus(point)
            with apply_gpu_settings(
                gpus, settings, allow=self.options.allow_gpu_settings, restore_file=self._restore_file()
            ):
                results = self._measure(point, {**self.env, "gpu_settings_readback": _readback(gpus)})
            results = [replace(r, config={**r.config, "gpu_settings": settings.to_dict()}) for r in results]
        return [_tag(r, self.sweep_name) for r in results]

    def _measure(self, point: Point, env: dict[str, Any]) -> list[RunResult]:
        assert self.engine is not None and self.meter is not None
        what = f"{point.engine} {point.mode} batch {point.batch_size}"
        if point.changes_gpu_settings:
            what += f" at {point.gpu_clock_mhz or '-'} MHz / {point.power_limit_w or '-'} W"
        self.say(f"compiling / warming up and measuring {what}")
        return run_point(
            self.engine,
            self.meter,
            point.model_copy(update=self.effective),
            point_id=point.point_id(),
            env=env,
            options=self.options,
            clock=self.clock,
            load_s=self.load_s,
            idle=self.idle,
        )

    def close(self) -> None:
        """Release the engine and the meter."""
        if self.meter is not None:
            self.meter.close()
        if self.engine is not None:
            self.engine.close()
        self.engine = self.meter = None
        if self._restore_dir is not None:
            shutil.rmtree(self._restore_dir, ignore_errors=True)
            self._restore_dir = None


def measure_one(worker: GroupWorker, point: Point) -> list[RunResult]:
    """Open `worker`, measure `point` with it and close it (what `run_measure` does for the CLI)."""
    try:
        worker.open()
        return worker.run(point)
    finally:
        worker.close()


def _tag(result: RunResult, sweep_name: str) -> RunResult:
    if not sweep_name:
        return result
    return replace(result, config={**result.config, "sweep": sweep_name})

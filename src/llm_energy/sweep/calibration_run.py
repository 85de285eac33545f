"""Run a calibration plan: the planned points as a resumable sweep, then the fit (`llm-energy calibrate`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from llm_energy.errors import ConfigError
from llm_energy.meters.gpus import GpuSpec, gpu_spec
from llm_energy.modeling.physical import PhysicalModel
from llm_energy.sweep.calibrate import PlannedPoint, concurrency_cap, engine_options, plan_calibration
from llm_energy.sweep.spec import Point, SweepSpec, make_point


class PlannedSweep(SweepSpec):
    """A sweep whose points are a calibration plan (not a rectangular grid)."""

    planned: list[Point] = Field(default_factory=list, exclude=True)

    def points(self) -> list[Point]:
        """The plan's points, in its priority order."""
        return list(self.planned)


@dataclass(frozen=True)
class CalibrationPlan:
    """A plan with what it was made for."""

    gpu: GpuSpec
    gpu_source: str
    prior: PhysicalModel
    points: list[PlannedPoint]
    spec: PlannedSweep
    prior_name: str = ""
    """The bundled profile the point times were predicted from (rescaled to `gpu` when another GPU's)."""


def detect_gpu(name: str | None) -> tuple[GpuSpec, str]:
    """The target GPU: `name` if given (published figures), else the first GPU NVML sees here.

    Raises:
        ConfigError: no GPU given or found, or no published figures for it.
    """
    if name:
        return gpu_spec(name), "given"
    try:
        from llm_energy.meters import detect_gpus

        gpus, _ = detect_gpus(probe_update_period=False)
    except Exception:  # noqa: BLE001 - no NVML here is the common case on a CPU machine
        gpus = []
    if not gpus:
        raise ConfigError("no GPU found here: give the target with --gpu (e.g. --gpu 'NVIDIA H200') to plan")
    info = gpus[0].info()
    spec = gpu_spec(str(info.get("name")))
    memory = float(info.get("memory_total_bytes") or spec.memory_bytes)
    return GpuSpec(spec.name, spec.peak_bf16_flops, spec.memory_bandwidth_bps, spec.tdp_w, memory), "detected"


def make_plan(
    *,
    model: str,
    engine: str,
    mode: str | None,
    gpu_name: str | None,
    gpu_minutes: float,
    max_input: int | None,
    options: dict[str, Any],
    device: str = "auto",
    window_s: float = 1.0,
) -> CalibrationPlan:
    """Plan the calibration of (model, engine, mode) on the target GPU within `gpu_minutes`.

    Raises:
        ConfigError: a bad budget, GPU, model, engine or mode (named), or a budget too small for a fit.
    """
    from llm_energy.architectures import load_architecture
    from llm_energy.modeling.fitting import kv_capacity_from_memory
    from llm_energy.modeling.physical import ShapeConstants
    from llm_energy.modeling.profile import closest_bundled_profile, load_profile
    from llm_energy.modeling.transfer import transfer

    if not 0 < gpu_minutes <= 24 * 60:
        raise ConfigError(f"--gpu-minutes must be in (0, 1440], got {gpu_minutes}")
    gpu, source = detect_gpu(gpu_name)
    try:
        shape = ShapeConstants.of(load_architecture(model))
    except ConfigError:
        shape = ShapeConstants.generic(max_context_tokens=max_input or 8192)
    longest = min(max_input or shape.max_context_tokens, shape.max_context_tokens)
    if longest < 256:
        raise ConfigError(f"--max-input must be ≥ 256 tokens, got {longest}")
    prior_name = closest_bundled_profile(engine, mode, model, gpu.name)
    base = load_profile(prior_name)
    assert base.physical is not None
    kv = kv_capacity_from_memory(shape, gpu.memory_bytes) if gpu.memory_bytes and shape.weight_bytes else 1e6
    prior = transfer(base.physical, gpu_spec(base.gpu_name), gpu, kv_capacity_tokens=kv)
    plan = plan_calibration(
        prior,
        engine=engine,
        mode=mode,
        budget_s=gpu_minutes * 60,
        max_input=longest,
        max_num_seqs=concurrency_cap(engine, options),
        kv_capacity_tokens=kv,
        window_s=window_s,
    )
    opts = engine_options(engine, plan, options)
    points = [
        make_point(
            model=model,
            engine=engine,
            mode=mode,
            batch_size=p.batch_size,
            input_len=p.input_len,
            output_len=p.output_len,
            device=device,
            options=opts,
        )
        for p in plan
    ]
    spec = PlannedSweep(
        name=f"calibrate-{engine}-{mode}",
        models=[model],
        engines=[{"engine": engine, "mode": mode, **opts}],
        batch_sizes=[1],
        input_lens=[plan[0].input_len],
        output_lens=[plan[0].output_len],
        window_s=window_s,
        idle_s=2.0,
        device=device,
        planned=points,
    )
    return CalibrationPlan(gpu, source, prior, plan, spec, prior_name)


def run_plan(
    plan: CalibrationPlan,
    store: Any,
    *,
    on_point: Callable[[Any], None] | None = None,
    budget_s: float | None = None,
) -> Any:
    """Measure the plan's points (resumable: stored points are skipped) and return the sweep summary.

    With `budget_s`, no point starts after that many seconds (the summary's `over_budget` counts them).
    """
    from llm_energy.sweep.sweep import run_sweep

    return run_sweep(plan.spec, store, on_point=on_point, time_budget_s=budget_s)

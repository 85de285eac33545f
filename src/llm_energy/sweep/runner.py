"""Measure one point: prepare (compile, timed apart), then prefill, decode and total windows.

The runner, not the engine, places the meter windows: each phase runs inside its own window and is
repeated until the window lasts `target_window_s`, so a window spans many counter update periods
(see docs/methodology.md). The `total` window runs whole generations (prefill + decode) and checks
that prefill + decode adds up. A failed point becomes a `RunResult` with status `oom` or `error`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_energy.engines.base import Batch, Engine
from llm_energy.errors import EngineError, OutOfMemory
from llm_energy.meters.base import Clock, EnergyMeter
from llm_energy.records import Measurement, Phase, PhaseResult, RunResult
from llm_energy.sweep.spec import Point

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How a point is measured.

    Attributes:
        target_window_s: Each phase is repeated inside its window until the window lasts this long
            (≥ 10 counter update periods keeps the update-period uncertainty ≤ 10%).
        max_repetitions: Upper bound on repetitions inside one window.
        measure_total: Also measure whole generations in a `total` window.
        repeats: Independent measurements of the point (each stored as its own run).
        time_limit_s: Once a point has run this long, no further repeat starts (soft limit).
        allow_gpu_settings: Consent to change the GPU's SM clock / power limit for points that set
            them (`--allow-gpu-settings`); without it such a point is refused (`ConfigError`).
    """

    target_window_s: float = 2.0
    max_repetitions: int = 100_000
    measure_total: bool = True
    repeats: int = 1
    time_limit_s: float | None = None
    allow_gpu_settings: bool = False


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def repeat_in_window(
    meter: EnergyMeter,
    name: str,
    body: Callable[[], object],
    sync: Callable[[], None],
    clock: Clock,
    options: RunOptions,
) -> tuple[Measurement, int]:
    """Run `body` repeatedly inside meter window `name` until it lasts `target_window_s`.

    Returns:
        The window's measurement and the number of repetitions it holds.
    """
    reps = 0
    with meter.window(name) as w:
        t0_s = clock()
        while True:
            body()
            sync()  # CUDA is asynchronous: wait before reading the clock
            reps += 1
            if clock() - t0_s >= options.target_window_s or reps >= options.max_repetitions:
                break
    return w.measurement, reps


def measure_phases(
    engine: Engine, meter: EnergyMeter, batch: Batch, clock: Clock, options: RunOptions
) -> dict[Phase, PhaseResult]:
    """Measure prefill, decode and (optionally) total of a prepared engine."""
    phases: dict[Phase, PhaseResult] = {}
    m, reps = repeat_in_window(meter, "prefill", engine.prefill, engine.synchronize, clock, options)
    phases["prefill"] = PhaseResult("prefill", m, reps, batch.prefill_tokens)
    separate = engine.separate_decode
    if separate and batch.decode_steps > 0:
        engine.prefill()  # the state decode starts from; outside the decode window
        engine.synchronize()
        m, reps = repeat_in_window(meter, "decode", engine.decode, engine.synchronize, clock, options)
        phases["decode"] = PhaseResult("decode", m, reps, batch.decode_tokens)
    if options.measure_total or not separate:
        m, reps = repeat_in_window(meter, "total", engine.generate, engine.synchronize, clock, options)
        phases["total"] = PhaseResult("total", m, reps, batch.batch_size * batch.output_tokens)
    if not separate and batch.decode_steps > 0:
        phases["decode"] = decode_by_difference(phases["prefill"], phases["total"], batch)
    return phases


def decode_by_difference(prefill: PhaseResult, total: PhaseResult, batch: Batch) -> PhaseResult:
    """Decode of one generation as (total window − prefill window), per repetition, per domain.

    For engines that cannot run decode on its own (vLLM, continuous batching), both terms are measured
    windows; the uncertainties add, and the result is flagged `derived:total-minus-prefill`.
    """
    p, t = prefill.measurement, total.measurement
    domains = [d for d in t.energy_j if d in p.energy_j]
    energy_j = {d: t.energy_j[d] / total.repetitions - p.energy_j[d] / prefill.repetitions for d in domains}
    uncertainty_j = {
        d: t.uncertainty_j[d] / total.repetitions + p.uncertainty_j[d] / prefill.repetitions for d in domains
    }
    derived = Measurement(
        duration_s=max(total.duration_s - prefill.duration_s, 0.0),
        energy_j=energy_j,
        uncertainty_j=uncertainty_j,
        source={d: t.source[d] for d in domains},
        idle_power_w=dict(t.idle_power_w),
        flags=(*t.flags, "derived:total-minus-prefill"),
    )
    return PhaseResult("decode", derived, 1, batch.decode_tokens)


def run_point(
    engine: Engine,
    meter: EnergyMeter,
    point: Point,
    *,
    env: Mapping[str, Any],
    options: RunOptions | None = None,
    clock: Clock = time.monotonic,
    load_s: float = 0.0,
    idle: Measurement | None = None,
    point_id: str | None = None,
) -> list[RunResult]:
    """Prepare `engine` for `point` and measure it `options.repeats` times.

    Never raises for a failing configuration: out-of-memory becomes status `oom`, any other engine
    failure status `error`, each with its message, so a sweep can go on. `point_id` overrides the
    point's own id (a sweep stores the id of the point as specified, before device resolution).

    Returns:
        One `RunResult` per repeat (a single failed result if preparation failed).
    """
    options = options or RunOptions()
    batch = Batch(point.batch_size, point.input_len, point.output_len, point.seed)
    config = {
        **point.model_dump(),
        "point_id": point_id or point.point_id(),
        "target_window_s": options.target_window_s,
        "engine_facts": dict(engine.describe()),
    }
    env = dict(env)
    idle_phase: dict[Phase, PhaseResult] = {} if idle is None else {"idle": PhaseResult("idle", idle, 1, 0)}
    t0_s = clock()
    try:
        engine.prepare(batch)
        compile_s = clock() - t0_s
        # Facts known only after a generation (e.g. the measured acceptance of speculative decoding).
        config["engine_facts"] = dict(engine.describe())
        results: list[RunResult] = []
        for _ in range(options.repeats):
            if results and options.time_limit_s is not None and clock() - t0_s > options.time_limit_s:
                logger.warning(
                    "time limit %.0f s reached after %d repeat(s) of %s",
                    options.time_limit_s,
                    len(results),
                    point,
                )
                break
            phases = measure_phases(engine, meter, batch, clock, options)
            results.append(
                RunResult(
                    run_id=uuid.uuid4().hex,
                    phases={**phases, **idle_phase},
                    status="ok",
                    compile_s=compile_s,
                    created_at=_now_iso(),
                    config=config,
                    env=env,
                    load_s=load_s,
                )
            )
        return results
    except OutOfMemory as exc:
        logger.info("out of memory at %s: %s", point, exc)
        return [
            RunResult(
                run_id=uuid.uuid4().hex,
                status="oom",
                error=str(exc),
                created_at=_now_iso(),
                config=config,
                env=env,
                load_s=load_s,
            )
        ]
    except (EngineError, RuntimeError) as exc:
        logger.warning("point failed %s: %s", point, exc)
        return [
            RunResult(
                run_id=uuid.uuid4().hex,
                status="error",
                error=f"{type(exc).__name__}: {exc}",
                created_at=_now_iso(),
                config=config,
                env=env,
                load_s=load_s,
            )
        ]

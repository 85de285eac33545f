"""Open an engine configuration and run a trace sample on it with `run_validation` (one model load).

Shared by `llm-energy validate`, `llm-energy recommend --validate` and the GPU benchmark scripts, so every
validation run opens its engine the same way (`GroupWorker`: idle power, load, the meter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_energy.records import Measurement
from llm_energy.validation.offline import ValidationRun
from llm_energy.workloads.traces import Trace

if TYPE_CHECKING:
    from llm_energy.sweep.spec import Point


def measure_run(
    trace: str,
    sample: int,
    batch_size: int,
    *,
    model: str,
    engine: str,
    mode: str | None,
    device: str,
    seed: int,
    max_input_tokens: int | None,
    max_output_tokens: int | None,
    batching: str | None,
    options: dict[str, Any],
    idle_s: float,
    on_status: Callable[[str], None] | None = None,
) -> ValidationRun:
    """Sample `sample` requests of `trace`, open the engine, run them with `run_validation`, close.

    The sample depends only on (trace, sample, seed, length limits): runs of different configurations
    with the same ones get the same requests.

    Raises:
        ConfigError: bad sample, lengths (a sampled request beyond the model's context names its trace
            row), model, engine, mode or option (before anything loads).
    """
    from llm_energy.architectures import load_architecture
    from llm_energy.engines import engine_descriptor
    from llm_energy.validation.offline import sample_requests
    from llm_energy.workloads import load_trace

    simulated = engine_descriptor(engine).simulated  # runs no model: no context to keep to
    context = None if simulated else load_architecture(model).max_context_tokens
    tr, eligible = sample_requests(
        load_trace(trace),
        sample,
        seed=seed,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
        context_tokens=context,
    )
    return run_on_engine(
        tr,
        batch_size,
        model=model,
        engine=engine,
        mode=mode,
        device=device,
        seed=seed,
        batching=batching,
        options=options,
        idle_s=idle_s,
        on_status=on_status,
        eligible_requests=eligible,
        filters={"max_input_tokens": max_input_tokens, "max_output_tokens": max_output_tokens},
    )


def run_on_engine(
    tr: Trace,
    batch_size: int,
    *,
    model: str,
    engine: str,
    mode: str | None,
    device: str,
    seed: int,
    batching: str | None,
    options: dict[str, Any],
    idle_s: float,
    on_status: Callable[[str], None] | None = None,
    eligible_requests: int | None = None,
    filters: dict[str, int | None] | None = None,
) -> ValidationRun:
    """Open the engine configuration (one `ValidationEngine`), run `tr`'s requests on it, close.

    The engine's batch knob follows `batch_size` (vLLM `max_num_seqs`, the simulated engine's
    `max_batch_size`); the HF eager engine skips its per-shape warm-up (`run_validation` warms up once).

    Raises:
        ConfigError: bad lengths, model, engine, mode or option (before anything loads).
    """
    point = engine_point(
        model=model,
        engine=engine,
        mode=mode,
        device=device,
        seed=seed,
        options=options,
        batch_size=batch_size,
        requests=len(tr),
        input_len=int(tr.input_tokens.max()),
        output_len=int(tr.output_tokens.max()),
        max_model_len=int((tr.input_tokens + tr.output_tokens).max()),
    )
    with ValidationEngine(point, idle_s=idle_s, on_status=on_status) as opened:
        return opened.run(
            tr, batch_size, batching=batching, eligible_requests=eligible_requests, filters=filters
        )


class ValidationEngine:
    """One engine configuration opened for validation runs: a `GroupWorker` (idle power, load, meter).

    A context manager: entering opens the worker (closing it again if opening fails), leaving closes it.
    `run` measures one trace sample with `run_validation` on the loaded engine, so several samples and
    batch sizes share one model load. Every validation path (`llm-energy validate`, `compare`, `recommend
    --validate`, the GPU benchmark scripts) opens its engine this way.
    """

    def __init__(
        self, point: Point, *, idle_s: float, on_status: Callable[[str], None] | None = None
    ) -> None:
        from llm_energy.sweep.runner import RunOptions
        from llm_energy.sweep.worker import GroupWorker

        self.point = point
        self.worker = GroupWorker(point, RunOptions(), idle_s=idle_s, on_status=on_status)
        self.env: dict[str, Any] = {}

    def __enter__(self) -> ValidationEngine:
        try:
            self.env = self.worker.open()
        except BaseException:
            self.worker.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.worker.close()

    def run(
        self,
        tr: Trace,
        batch_size: int,
        *,
        batching: str | None = None,
        eligible_requests: int | None = None,
        filters: dict[str, int | None] | None = None,
    ) -> ValidationRun:
        """Run `tr`'s requests in batches of up to `batch_size` and measure them (`run_validation`)."""
        from llm_energy.validation.offline import run_validation

        w = self.worker
        assert w.engine is not None and w.meter is not None, "enter the ValidationEngine first"
        return run_validation(
            w.engine,
            w.meter,
            tr,
            batch_size,
            model=self.point.model,
            engine_name=self.point.engine,
            mode=self.point.mode,
            idle_power_w=idle_power_w(w.idle),
            eligible_requests=eligible_requests,
            filters=filters,
            seed=self.point.seed,
            env=self.env,
            clock=w.clock,
            batching=batching,  # type: ignore[arg-type]
        )


def engine_point(
    *,
    model: str,
    engine: str,
    mode: str | None,
    device: str,
    seed: int,
    options: dict[str, Any],
    batch_size: int,
    input_len: int,
    output_len: int,
    max_model_len: int,
    requests: int | None = None,
) -> Point:
    """The point that opens an engine for validation runs of up to `batch_size` requests at once.

    The engine's batch option follows `batch_size` and its context option the longest request unless
    `options` set them (vLLM `max_num_seqs` and `max_model_len`, the simulated engine's
    `max_batch_size`), and its `request_set_options` for the mode are added (the HF eager engine skips
    its per-shape warm-up: `run_validation` warms up once); see `EngineDescriptor`. `make_point`
    checks model, engine, mode and the longest request before anything loads.

    Raises:
        ConfigError: bad lengths, model, engine, mode or option.
    """
    from llm_energy.engines import check_mode, engine_descriptor
    from llm_energy.sweep.spec import make_point

    descriptor = engine_descriptor(engine)
    opts = dict(options)
    if descriptor.batch_option:
        opts.setdefault(descriptor.batch_option, batch_size)
    if descriptor.context_option:
        opts.setdefault(descriptor.context_option, max_model_len)
    for key, value in descriptor.request_set_options.get(check_mode(engine, mode), {}).items():
        opts.setdefault(key, value)
    return make_point(
        model=model,
        engine=engine,
        mode=mode,
        batch_size=batch_size if requests is None else min(batch_size, requests),
        input_len=input_len,
        output_len=output_len,
        device=device,
        seed=seed,
        options=opts,
    )


def idle_power_w(idle: Measurement | None) -> float:
    """Mean GPU idle power of the measurement taken before loading (0 when none)."""
    return idle.energy_sum_j("gpu") / idle.duration_s if idle is not None and idle.duration_s else 0.0

"""Validate the workload energy model: run sampled trace requests on a real engine and compare.

`run_validation` runs a sample of a trace's requests with their true input and output lengths on an
engine and measures the GPU energy; `compare` puts the measurement beside the model estimates of the
same requests (binned, p1, parametric, FLOPs). The engine's own batching is kept:

- **static** engines (`hf` eager/compiled/cudagraphs) take the requests in trace order in batches of B,
  each padded to its longest prompt and run until its longest output (what `generate` on a padded
  batch does: finished rows keep computing). The model estimates are given twice: per request (the
  seed study's binning, which does not know the padding) and per batch at the padded shape.
- **continuous** engines (`vllm`, and the simulated engine's continuous mode) get every request at
  once with `max_num_seqs` = B and schedule them themselves.

A `ValidationRun` is saved as JSON, so the (slow, GPU) measurement and the (fast, CPU) comparison can
run on different machines: `llm-energy validate --measured run.json --profile P`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llm_energy.atomic import write_atomically
from llm_energy.engines.base import Batch, ContinuousEngine, Engine
from llm_energy.errors import ConfigError, MeasurementWarning
from llm_energy.meters.base import Clock, EnergyMeter
from llm_energy.modeling.padded import padded_shapes
from llm_energy.workloads.traces import Trace

logger = logging.getLogger(__name__)

Batching = Literal["static", "continuous"]
VALIDATION_FORMAT = 1


@dataclass(frozen=True)
class MeasuredBatch:
    """One padded batch of a static-batching validation run."""

    requests: int
    input_tokens_max: int
    output_tokens_max: int
    energy_j: float
    uncertainty_j: float
    duration_s: float
    start_s: float | None = None
    """When the batch's prefill began, seconds after the run began (the first batch's inputs being made):
    its requests, all queued at the start, waited until then."""
    prefill_s: float | None = None
    """Prefill time of the batch (timed apart inside its energy window; None: the engine cannot split)."""


@dataclass(frozen=True)
class ValidationRun:
    """Measured GPU energy of a trace sample run on one engine configuration."""

    trace: str
    model: str
    engine: str
    mode: str | None
    batch_size: int
    batching: Batching
    input_tokens: list[int]
    output_tokens: list[int]
    energy_j: float
    uncertainty_j: float
    duration_s: float
    idle_power_w: float
    eligible_requests: int
    """Requests of the trace that passed the length filters (the sample was drawn from these)."""
    window_energy_j: float
    """GPU energy of the one window around the whole run (static runs: batches plus the gaps between)."""
    filters: dict[str, int | None] = field(default_factory=dict)
    seed: int = 0
    batches: list[MeasuredBatch] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    ttft_s: list[float] = field(default_factory=list)
    """Per request (offline: every request queued at the start): time to first token; empty: not measured."""
    tpot_s: list[float] = field(default_factory=list)
    """Per request: mean time per output token after the first (a padded batch's decode step time)."""
    e2e_s: list[float] = field(default_factory=list)
    """Per request: time until its output is returned (a static batch returns all rows at its end)."""
    latency_note: str = ""
    """How the latencies were measured, or why they were not."""

    @property
    def requests(self) -> int:
        """Requests run."""
        return len(self.input_tokens)

    @property
    def j_per_request(self) -> float:
        """Measured GPU joules per request."""
        return self.energy_j / self.requests

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"format": VALIDATION_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationRun:
        """Inverse of `to_dict`.

        Raises:
            ConfigError: not a validation run of this format.
        """
        if data.get("format") != VALIDATION_FORMAT:
            raise ConfigError(
                f"not a validation run (format {data.get('format')!r}, want {VALIDATION_FORMAT})"
            )
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            fields["batches"] = [MeasuredBatch(**b) for b in fields.get("batches", [])]
            return cls(**fields)
        except TypeError as exc:
            raise ConfigError(f"malformed validation run: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the run as JSON (atomically: an existing file is replaced only when complete)."""
        return write_atomically(path, json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> ValidationRun:
        """Read a run written by `save`.

        Raises:
            ConfigError: missing, unreadable or malformed file.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read validation run {str(path)!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{str(path)!r} is not a validation run (not a JSON object)")
        return cls.from_dict(data)


def sample_requests(
    trace: Trace,
    n: int,
    *,
    seed: int = 0,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
    context_tokens: int | None = None,
) -> tuple[Trace, int]:
    """Draw `n` requests (kept in trace order) among those within the length limits.

    Args:
        trace: The trace to draw from.
        n: Requests to draw.
        seed: Seed of the draw.
        max_input_tokens: Only requests with at most this many input tokens are eligible.
        max_output_tokens: Only requests with at most this many output tokens are eligible.
        context_tokens: The model's context: a drawn request longer than it (input + output) is an
            error naming its trace row, never silently dropped.

    Returns:
        The sample and the number of eligible requests it was drawn from.

    Raises:
        ConfigError: n < 1, fewer eligible requests than `n`, or a drawn request beyond the context.
    """
    if n < 1:
        raise ConfigError(f"sample must be ≥ 1 request, got {n}")
    keep = np.ones(len(trace), bool)
    if max_input_tokens is not None:
        keep &= trace.input_tokens <= max_input_tokens
    if max_output_tokens is not None:
        keep &= trace.output_tokens <= max_output_tokens
    eligible = int(keep.sum())
    if eligible < n:
        limits = [
            f"{k} ≤ {v}"
            for k, v in (("input", max_input_tokens), ("output", max_output_tokens))
            if v is not None
        ]
        within = f" within the length limits ({', '.join(limits)})" if limits else ""
        raise ConfigError(
            f"only {eligible} of {trace.name}'s {len(trace)} requests are{within}; cannot sample {n}"
        )
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(np.flatnonzero(keep), size=n, replace=False))
    if context_tokens is not None:
        total = trace.input_tokens[index] + trace.output_tokens[index]
        if (too_long := np.flatnonzero(total > context_tokens)).size:
            k = int(index[too_long[0]])
            raise ConfigError(
                f"trace {trace.name}: row {k + 1} has {int(trace.input_tokens[k]):,} input + "
                f"{int(trace.output_tokens[k]):,} output tokens, more than the model's context of "
                f"{context_tokens:,} ({too_long.size} such request(s) in the sample); sample shorter ones "
                "with --max-input-tokens / --max-output-tokens"
            )
    sample = Trace(
        name=trace.name,
        input_tokens=trace.input_tokens[index],
        output_tokens=trace.output_tokens[index],
        source=trace.source,
    )
    return sample, eligible


def static_batches(input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: int) -> list[Batch]:
    """Consecutive groups of `batch_size` requests, each padded to its longest input and output.

    The grouping is `modeling.padded.padded_shapes`, the one the padded estimates use.
    """
    rows, lin, lout = padded_shapes(input_tokens, output_tokens, batch_size)
    return [
        Batch(int(b), int(i), int(o), seed=k) for k, (b, i, o) in enumerate(zip(rows, lin, lout, strict=True))
    ]


def run_validation(
    engine: Engine,
    meter: EnergyMeter,
    sample: Trace,
    batch_size: int,
    *,
    model: str,
    engine_name: str,
    mode: str | None,
    idle_power_w: float = 0.0,
    eligible_requests: int | None = None,
    filters: Mapping[str, int | None] | None = None,
    seed: int = 0,
    env: Mapping[str, Any] | None = None,
    clock: Clock = time.monotonic,
    batching: Batching | None = None,
) -> ValidationRun:
    """Run `sample` on a loaded `engine` and measure its GPU energy.

    Static engines run padded batches of `batch_size` in trace order (one unmeasured warm-up of the
    first batch's shape first); an engine with `generate_requests` gets all requests at once, unless
    `batching` says `static`.

    Raises:
        ConfigError: `continuous` asked of an engine that cannot schedule mixed requests.
    """
    lin, lout = sample.input_tokens, sample.output_tokens
    scheduler = engine if isinstance(engine, ContinuousEngine) else None
    can_schedule = scheduler is not None
    if batching == "continuous" and not can_schedule:
        raise ConfigError(f"engine {engine_name!r} has no continuous batching of mixed-length requests")
    continuous = can_schedule if batching is None else batching == "continuous"
    batches = [] if continuous else static_batches(lin, lout, batch_size)
    measured: list[MeasuredBatch] = []
    if continuous:
        assert scheduler is not None
        # A few sequences warm the engine up; more at long contexts would not fit one KV cache at once.
        warm = Batch(min(batch_size, len(lin), 8), int(np.median(lin)), int(min(np.median(lout), 16)))
        engine.prepare(warm)  # warms the engine up (vLLM: its first generate is slow)
        with meter.window("validate") as whole:
            t0_s = clock()
            produced = scheduler.generate_requests(lin.tolist(), lout.tolist(), seed)
            engine.synchronize()
        logger.info("%d requests, %d output tokens in %.1f s", len(lin), produced, clock() - t0_s)
        latencies = _engine_latencies(engine, len(lin))
    else:
        engine.prepare(batches[0])
        engine.generate()  # unmeasured warm-up at the first shape (the allocator, kernels, clocks)
        engine.synchronize()
        with meter.window("validate") as whole:
            t0_s = clock()
            for k, batch in enumerate(batches):
                engine.prepare(batch)
                measured.append(_run_batch(engine, meter, batch, k, clock, t0_s))
                logger.info("batch %d/%d: %.0f J", k + 1, len(batches), measured[-1].energy_j)
        latencies = _static_latencies(measured, lout)
    total = whole.measurement
    energy_j, uncertainty_j = total.gpu_energy_j, total.gpu_uncertainty_j
    if measured:
        # The batches' own windows: the GPU work of running them. Between them the host makes the next
        # batch's inputs (milliseconds for HF; the simulated engine's prepare sleeps), which stays out.
        energy_j = sum(b.energy_j for b in measured)
        uncertainty_j = sum(b.uncertainty_j for b in measured)
    return ValidationRun(
        trace=sample.name,
        model=model,
        engine=engine_name,
        mode=mode,
        batch_size=batch_size,
        batching="continuous" if continuous else "static",
        input_tokens=[int(x) for x in lin],
        output_tokens=[int(x) for x in lout],
        energy_j=energy_j,
        uncertainty_j=uncertainty_j,
        duration_s=total.duration_s,
        window_energy_j=total.gpu_energy_j,
        idle_power_w=idle_power_w,
        eligible_requests=len(lin) if eligible_requests is None else eligible_requests,
        filters=dict(filters or {}),
        seed=seed,
        batches=measured,
        env=dict(env or {}),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        **latencies,
    )


def _run_batch(
    engine: Engine, meter: EnergyMeter, batch: Batch, k: int, clock: Clock, t0_s: float
) -> MeasuredBatch:
    """Run one prepared padded batch in its own energy window, timing its prefill apart inside it."""
    # Per-batch windows are a breakdown inside the measured whole; short ones are expected and their
    # uncertainty is reported, so their short-window warning would only be noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeasurementWarning)
        with meter.window(f"batch-{k}") as part:
            start_s = clock()
            prefill_s: float | None = None
            if engine.separate_decode:
                # The synchronize only ends the prefill's timer; the window spans the whole batch.
                engine.prefill()
                engine.synchronize()
                prefill_s = clock() - start_s
                if batch.decode_steps > 0:
                    engine.decode()
            else:
                engine.generate()
            engine.synchronize()
    m = part.measurement
    return MeasuredBatch(
        batch.batch_size,
        batch.input_tokens,
        batch.output_tokens,
        m.gpu_energy_j,
        m.gpu_uncertainty_j,
        m.duration_s,
        start_s=start_s - t0_s,
        prefill_s=prefill_s,
    )


def _static_latencies(batches: list[MeasuredBatch], output_tokens: np.ndarray) -> dict[str, Any]:
    """Per-request TTFT / TPOT / E2E of padded batches run back to back, every request queued at t=0."""
    if not batches or any(b.prefill_s is None or b.start_s is None for b in batches):
        return {"latency_note": "latency not measured: the engine cannot time prefill apart"}
    ttft: list[float] = []
    tpot: list[float] = []
    e2e: list[float] = []
    for b in batches:
        assert b.start_s is not None and b.prefill_s is not None
        step_s = (b.duration_s - b.prefill_s) / (b.output_tokens_max - 1) if b.output_tokens_max > 1 else 0.0
        ttft += [b.start_s + b.prefill_s] * b.requests
        tpot += [step_s] * b.requests
        e2e += [b.start_s + b.duration_s] * b.requests
    assert len(ttft) == len(output_tokens)
    return {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "latency_note": (
            "offline: every request queued at the start; TTFT = its batch's wait + prefill, TPOT = the "
            "padded batch's decode step, E2E = its batch's end"
        ),
    }


def _engine_latencies(engine: Engine, requests: int) -> dict[str, Any]:
    """Latencies a continuous engine reports for its last `generate_requests`, where it does.

    An engine may set `last_request_latencies_s` to one (ttft_s, tpot_s, e2e_s) per request (vLLM's
    `RequestOutput.metrics` where its statistics are on); otherwise latency was not measured.
    """
    reported = getattr(engine, "last_request_latencies_s", None)
    if not reported or len(reported) != requests:
        return {"latency_note": f"latency not measured: {engine.name} reports no per-request timing"}
    return {
        "ttft_s": [float(r[0]) for r in reported],
        "tpot_s": [float(r[1]) for r in reported],
        "e2e_s": [float(r[2]) for r in reported],
        "latency_note": f"as reported by {engine.name} (offline: every request submitted at the start)",
    }


def slo_attainment(run: ValidationRun, slo_s: Mapping[str, float]) -> dict[str, float] | None:
    """Fraction of the run's requests meeting each SLO bound (ttft, tpot, e2e) and all of them at once.

    Returns:
        Metric → fraction, with `all`; None when the run has no latencies.
    """
    if not run.ttft_s:
        return None
    values = {
        "ttft": np.asarray(run.ttft_s),
        "tpot": np.asarray(run.tpot_s),
        "e2e": np.asarray(run.e2e_s),
    }
    met = np.ones(run.requests, bool)
    out: dict[str, float] = {}
    for metric, bound in slo_s.items():
        ok = values[metric] <= bound
        out[metric] = float(ok.mean())
        met &= ok
    out["all"] = float(met.mean())
    return out

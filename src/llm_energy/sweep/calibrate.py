"""`llm-energy calibrate`: the points that pin the physical model within a GPU-time budget.

`calibrate` measures them as a resumable sweep (`calibration_run.py`), fits, and reports the
cross-validated error.

The plan walks a priority list: each early point pins one coefficient (batch-1 decode → the per-step cost;
a large batch at short context → the per-sequence cost and GEMM prefill; long prompts at batch 1 → attention;
medium contexts at medium batches → KV reads), then log-spaced lengths up to the model's context fill what the
budget leaves, cheapest first. Long contexts run only at the batches the KV cache holds. Each point's time is
predicted from a prior (the closest bundled profile: same engine and mode, then model, then GPU; rescaled to
this GPU's published peaks when measured on another, `transfer.py`), plus
the runner's windows (warm-up, prefill window, whole-generation window); the engine's load is counted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llm_energy.engines import engine_class, engine_descriptor
from llm_energy.errors import ConfigError
from llm_energy.modeling.physical import PhysicalModel

CORE_POINTS: tuple[tuple[int, int, int, str], ...] = (
    (1, 512, 128, "decode step at batch 1; prefill pass constant"),
    (64, 512, 128, "per-sequence decode cost; GEMM-bound prefill"),
    (1, 8192, 128, "attention in prefill; KV read at batch 1"),
    (-1, 128, 64, "per-sequence cost at the engine's concurrency cap"),
    (1, 32768, 32, "attention at long context"),
    (16, 2048, 256, "KV reads at a medium batch"),
    (8, 8192, 128, "KV reads with attention"),
    (1, -1, 16, "the longest context the model and cache hold"),
    (4, 32768, 64, "long context at a small batch"),
    (128, 2048, 64, "large batch at medium context"),
    (1, 128, 32, "the shortest prompt"),
    (32, 4096, 128, "KV reads at a larger batch"),
    (2, 65536, 32, "very long context at batch 2"),
)
"""(batch, input, output, what it pins); -1 batch = the engine's cap, -1 input = the longest context."""

FILL_INPUTS = (128, 512, 2048, 8192, 32768, 131072)
FILL_BATCHES = (1, 4, 16, 64, 256)
FILL_OUTPUT = 64


@dataclass(frozen=True)
class PlannedPoint:
    """One calibration point with its predicted measuring time."""

    batch_size: int
    input_len: int
    output_len: int
    est_s: float
    purpose: str


def _window_s(phase_s: float, window_s: float) -> float:
    """A window repeats its phase until it lasts `window_s`, in whole repetitions (up to 2x one phase)."""
    return phase_s * max(1, math.ceil(window_s / phase_s)) if phase_s > 0 else window_s


def point_seconds(
    prior: PhysicalModel, b: int, i: int, o: int, window_s: float, engine: str, mode: str | None
) -> float:
    """Predicted seconds to measure one point: preparing it, then its windows (`runner.measure_phases`)."""
    cost = prior.batch_cost(b, i, o)
    pre, total = float(cost.prefill_s), float(cost.prefill_s + cost.decode_s)
    descriptor, static = engine_descriptor(engine), engine_class(engine).separate_decode
    # A static engine (HF) compiles each new shape when it prepares it; a continuous one (vLLM) did at load.
    prepare = descriptor.warmup_generations * total + (
        descriptor.compile_s.get(mode or "", 0.0) if static else 0.0
    )
    windows = _window_s(pre, window_s) + _window_s(total, window_s)
    if static:  # decode in its own window, after one more prefill to start from
        windows += pre + _window_s(total - pre, window_s)
    return prepare + windows + 1.0


def plan_calibration(
    prior: PhysicalModel,
    *,
    engine: str,
    mode: str | None = None,
    budget_s: float,
    max_input: int,
    max_num_seqs: int | None,
    kv_capacity_tokens: float,
    window_s: float = 1.0,
) -> list[PlannedPoint]:
    """Points in priority order whose predicted time (with the engine's load) fits `budget_s`.

    Raises:
        ConfigError: the budget does not even cover the engine's load and the first point.
    """
    cap = max_num_seqs or 256
    candidates = [(b, i, o, why) for b, i, o, why in CORE_POINTS]
    fill = sorted(
        ((b, i, FILL_OUTPUT, "log-spaced fill") for i in FILL_INPUTS for b in FILL_BATCHES),
        key=lambda p: p[0] * p[1],
    )
    plan: list[PlannedPoint] = []
    seen: set[tuple[int, int, int]] = set()
    load_s = engine_descriptor(engine).load_budget_s  # counted once
    spent = load_s
    for b_spec, i_spec, o, why in candidates + fill:
        longest = max_input - o
        b = cap if b_spec == -1 else b_spec
        i = longest if i_spec == -1 else min(i_spec, longest)
        fits_kv = b * (i + o) <= 0.9 * kv_capacity_tokens
        if i < 16 or b > cap or not fits_kv or (b, i, o) in seen:
            continue
        est = point_seconds(prior, b, i, o, window_s, engine, mode)
        if spent + est > budget_s:
            continue
        seen.add((b, i, o))
        spent += est
        plan.append(PlannedPoint(b, i, o, est, why))
    if len(plan) < 5:
        raise ConfigError(
            f"a budget of {budget_s / 60:.1f} GPU-minutes fits only {len(plan)} calibration point(s) after "
            f"the engine's load (~{load_s:.0f} s); the physical model needs ≥ 5: "
            "raise --gpu-minutes"
        )
    return plan


def planned_seconds(plan: list[PlannedPoint], engine: str) -> float:
    """Predicted total: the engine's load plus every point."""
    return engine_descriptor(engine).load_budget_s + sum(p.est_s for p in plan)


def concurrency_cap(engine: str, options: dict[str, Any]) -> int | None:
    """The most sequences a continuous engine runs at once (its batch option: given, else its default).

    None for an engine measured in batches as given (one that runs decode on its own).
    """
    option = engine_descriptor(engine).batch_option
    if option is None or engine_class(engine).separate_decode:
        return None
    value = options.get(option) or engine_class(engine).Config.model_fields[option].default
    return int(value) if value else None


def engine_options(engine: str, plan: list[PlannedPoint], options: dict[str, Any]) -> dict[str, Any]:
    """The engine's options for the plan: sized for the longest point and the largest batch.

    Its context option (vLLM `max_model_len`) holds the longest point, rounded up to 256 tokens, and
    its batch option (vLLM `max_num_seqs`) the largest batch; options given win.
    """
    out = dict(options)
    descriptor = engine_descriptor(engine)
    if descriptor.context_option:
        longest = max(p.input_len + p.output_len for p in plan)
        out.setdefault(descriptor.context_option, int(math.ceil(longest / 256) * 256))
    if descriptor.batch_option and not engine_class(engine).separate_decode:
        out.setdefault(descriptor.batch_option, max(p.batch_size for p in plan))
    return out

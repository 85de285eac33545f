"""Optimisation axes on one GPU (issue 8, parts 1-3): decoding strategies, speculative decoding, MoE vs dense.

One process, one meter path (`run_point` / `repeat_in_window` with Zeus on the GPU), a time budget:

* decoding: Llama-3.1-8B, in 512 / out 128, J/output token for greedy, sample, top-p, beam 4 at batch 1, 8,
  32, 128 (`hf` eager; beam counts the tokens it computes and returns; out of memory is stored as `oom`);
* speculative: 8B target + Llama-3.2-1B draft, γ = 4, batch 1, 8, 32, 128: measured draft-step and
  verification costs feeding `llm_energy.modeling.speculative` (α = 0.5…0.9, crossover batch per α), the
  constructed pair (α = 1, both final norms zeroed) against plain decoding with the same zeroed norm, and the
  real random pair (α ≈ 0) against plain greedy decoding;
* moe: OLMoE-1B-7B vs OLMo-1B vs OLMo-7B, in 512 / out 128, batch 1, 8, 64, 256, 512, eager, plus how the random
  router spreads tokens over experts.

Every point starts only if the budget of its part (with the time earlier parts left unused) still holds the
point's estimated cost; skipped points are listed. The result is OUT/axes.json and a log OUT/axes.log:

    PYTHONPATH=src python3 benchmarks/axes_gpu.py $OUT            # H100, ≤ 8.5 min: 450 s budget + start-up
    PYTHONPATH=src python3 benchmarks/axes_gpu.py $OUT --smoke    # CPU, tiny shapes, simulated meter
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llm_energy.architectures import Architecture, load_architecture
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.engines.hf_speculative import HFSpeculativeConfig, HFSpeculativeEngine, zero_final_norm
from llm_energy.errors import ConfigError
from llm_energy.meters import EnergyMeter
from llm_energy.modeling.speculative import (
    Policy,
    SpecCosts,
    crossover_batch,
    draft_step_from_decode,
    energy_ratio,
    tokens_per_round,
)
from llm_energy.records import RunResult
from llm_energy.sweep.runner import RunOptions, repeat_in_window, run_point
from llm_energy.sweep.spec import Point

log = logging.getLogger("axes_gpu")
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
PARTS = ("decoding", "speculative", "moe")


@dataclass
class Settings:
    """Shapes, batches and budget of one run (GPU defaults, or tiny ones for --smoke)."""

    device: str = "cuda"
    dtype: str = "bfloat16"
    target: str = "llama-3.1-8b"
    draft: str = "llama-3.2-1b"
    trio: tuple[str, ...] = ("olmoe-1b-7b", "olmo-1b", "olmo-7b")
    decoding_batches: tuple[int, ...] = (1, 8, 32, 128)
    spec_batches: tuple[int, ...] = (1, 8, 32, 128)
    moe_batches: tuple[int, ...] = (1, 8, 64, 256, 512)
    input_len: int = 512
    output_len: int = 128
    lookahead: int = 4
    num_beams: int = 4
    window_s: float = 1.0
    budget_s: float = 450.0
    shares_s: dict[str, float] = field(
        default_factory=lambda: {"decoding": 170.0, "speculative": 150.0, "moe": 160.0}
    )
    archs: dict[str, Architecture] = field(default_factory=dict)
    only: frozenset[str] | None = None
    """`series:batch` points to run (e.g. `beam4:8`, `components:32`); None runs every point."""

    def selected(self, series: str, batch: int) -> bool:
        return self.only is None or f"{series}:{batch}" in self.only

    def selects(self, series: str) -> bool:
        return self.only is None or any(p.split(":")[0] == series for p in self.only)

    def arch(self, name: str) -> Architecture:
        return self.archs[name] if name in self.archs else load_architecture(name)


def _tiny(name: str, base: str, **overrides: Any) -> Architecture:
    config = {**load_architecture(base).config, **overrides}
    return Architecture(name=name, config=MappingProxyType(config))


def smoke_settings() -> Settings:
    """Tiny shapes on the CPU: every code path of the GPU run in a few seconds."""
    small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4}
    archs = {
        "tiny-olmoe": _tiny(
            "tiny-olmoe",
            "olmoe-1b-7b",
            **small,
            intermediate_size=32,
            num_experts=8,
            num_experts_per_tok=2,
            vocab_size=512,
        ),
        "tiny-olmo": _tiny("tiny-olmo", "olmo-1b", **small, intermediate_size=64, vocab_size=512),
        "tiny-olmo-wide": _tiny("tiny-olmo-wide", "olmo-1b", **small, intermediate_size=256, vocab_size=512),
    }
    return Settings(
        device="cpu",
        dtype="float32",
        target="tiny",
        draft="tiny",
        trio=("tiny-olmoe", "tiny-olmo", "tiny-olmo-wide"),
        decoding_batches=(1, 2),
        spec_batches=(1, 2),
        moe_batches=(1, 2),
        input_len=16,
        output_len=6,
        lookahead=2,
        num_beams=2,
        window_s=0.05,
        budget_s=300.0,
        archs=archs,
    )


class Budget:
    """Deadlines per part: a part may use its share plus whatever earlier parts left unused."""

    def __init__(
        self, total_s: float, shares_s: dict[str, float], clock: Callable[[], float] = time.monotonic
    ):
        self.clock = clock
        self.start_s = clock()
        self.total_s = total_s
        self.shares_s = shares_s
        self.skipped: list[str] = []

    def deadline_s(self, part: str) -> float:
        # The parts after this one keep their shares (scaled to the total); the rest is this part's.
        order = list(self.shares_s)
        later = sum(self.shares_s[p] for p in order[order.index(part) + 1 :])
        return self.start_s + self.total_s * (1 - later / sum(self.shares_s.values()))

    def allows(self, part: str, what: str, estimate_s: float) -> bool:
        left_s = self.deadline_s(part) - self.clock()
        if estimate_s <= left_s:
            return True
        self.skipped.append(f"{part}: {what} (estimated {estimate_s:.0f} s, {left_s:.0f} s left)")
        log.info("skip %s: %s (estimated %.0f s, %.0f s left)", part, what, estimate_s, left_s)
        return False

    def elapsed_s(self) -> float:
        return self.clock() - self.start_s


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _build(s: Settings, name: str, seed: int = 0) -> tuple[Any, float]:
    from llm_energy.architectures import build_model

    t0 = time.monotonic()
    model = build_model(s.arch(name), device=s.device, dtype=s.dtype, seed=seed)
    if s.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return model, time.monotonic() - t0


def _point(s: Settings, model: str, engine: str, batch: int, options: dict[str, Any]) -> Point:
    return Point(
        model=model,
        engine=engine,
        mode="eager",
        batch_size=batch,
        input_len=s.input_len,
        output_len=s.output_len,
        dtype=s.dtype,
        device=s.device,
        options=options,
    )


def row_of(result: RunResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON row: status, energy/time per phase and J per output token (GPU energy, idle included)."""
    cfg = result.config
    row: dict[str, Any] = {
        "model": cfg["model"],
        "engine": cfg["engine"],
        "batch": cfg["batch_size"],
        "options": cfg.get("options", {}),
        "status": result.status,
        "error": result.error,
        "compile_s": round(result.compile_s, 2),
        **(extra or {}),
    }
    if result.status != "ok":
        return row
    energy_j = 0.0
    for name in ("prefill", "decode"):
        if name in result.phases:
            p = result.phases[name]
            energy_j += p.energy_j
            row[f"{name}_j"] = p.energy_j
            row[f"{name}_unc_j"] = p.uncertainty_j
            row[f"{name}_s"] = p.duration_s
            row[f"{name}_w"] = p.measurement.mean_power_w("gpu:")
            row[f"{name}_reps"] = p.repetitions
            row[f"{name}_j_per_token"] = p.energy_per_token_j
    b, out = cfg["batch_size"], cfg["output_len"]
    row["tokens_returned"] = b * out
    row["j_per_output_token"] = energy_j / (b * out)  # prefill + decode of one generation
    if "decode" in result.phases:
        row["decode_step_s"] = result.phases["decode"].duration_s / (out - 1)
        row["decode_step_j"] = result.phases["decode"].energy_j / (out - 1)
    return row


class Runner:
    """Measures points with one meter, keeps rows, estimates costs and skips what the budget cannot hold."""

    def __init__(self, s: Settings, meter: EnergyMeter, env: dict[str, Any], budget: Budget) -> None:
        self.s, self.meter, self.env, self.budget = s, meter, env, budget
        self.options = RunOptions(target_window_s=s.window_s, measure_total=False)
        self.last_cost_s: dict[str, tuple[float, int]] = {}

    def estimate_s(self, series: str, part: str, batch: int = 1) -> float:
        """The last point of the series (else of the part) scaled by sqrt(batch ratio), at least x1.2."""
        cost_s, last_batch = self.last_cost_s.get(series, self.last_cost_s.get(part, (0.0, batch)))
        return cost_s * max(1.2, math.sqrt(batch / last_batch))

    def measure(
        self, part: str, series: str, engine: Any, point: Point, extra: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        what = f"{series} batch {point.batch_size}"
        if not self.s.selected(series, point.batch_size):
            return None
        if not self.budget.allows(part, what, self.estimate_s(series, part, point.batch_size)):
            return None
        t0 = time.monotonic()
        self.meter.sync = engine.synchronize
        result = run_point(engine, self.meter, point, env=self.env, options=self.options)[0]
        cost_s = time.monotonic() - t0
        self.last_cost_s[series] = self.last_cost_s[part] = (cost_s, point.batch_size)
        row = row_of(result, {"series": series, "wall_s": round(cost_s, 1), **(extra or {})})
        if result.status != "ok":
            _free(self.s.device)
        log.info("%s", json.dumps({k: v for k, v in row.items() if not k.endswith("_unc_j")}, default=str))
        return row


# -- (a) decoding strategies ---------------------------------------------------------------------------
def part_decoding(r: Runner, model: Any) -> list[dict[str, Any]]:
    s = r.s
    strategies: list[tuple[str, dict[str, Any]]] = [
        ("greedy", {"decoding": "greedy"}),
        ("sample", {"decoding": "sample", "temperature": 1.0}),
        ("top-p", {"decoding": "top-p", "top_p": 0.9}),
        (f"beam{s.num_beams}", {"decoding": "beam", "num_beams": s.num_beams}),
    ]
    rows: list[dict[str, Any]] = []
    # Greedy first over every batch (it is also speculative decoding's baseline), then the others per batch.
    order = [(strategies[0], b) for b in s.decoding_batches]
    order += [(st, b) for b in s.decoding_batches for st in strategies[1:]]
    oom: set[str] = set()
    for (label, opts), batch in order:
        if label in oom:
            rows.append(
                {"series": label, "batch": batch, "status": "oom", "error": "a smaller batch was oom"}
            )
            continue
        engine = HFEngine(
            HFEngineConfig(mode="eager", device=s.device, dtype=s.dtype, **opts), s.arch(s.target)
        )
        engine.model = model  # shared weights: built once
        row = r.measure(
            "decoding", label, engine, _point(s, s.target, "hf", batch, opts), {"decoding": label}
        )
        if row is not None:
            if row["status"] == "ok":
                beams = s.num_beams if opts["decoding"] == "beam" else 1
                row["decode_tokens_returned"] = batch * (s.output_len - 1)
                row["decode_tokens_computed"] = batch * beams * (s.output_len - 1)
            elif row["status"] == "oom":
                oom.add(label)
            rows.append(row)
        engine.model = None
        engine.close()
    return rows


# -- (b) speculative decoding ----------------------------------------------------------------------------
def _window_cost(r: Runner, engine: Any, name: str, body: Callable[[], int]) -> dict[str, float]:
    """Energy and time per call of `body`'s unit (a draft step or a verification), in one meter window."""
    calls = [0]

    def run() -> None:
        calls[0] += body()

    m, _reps = repeat_in_window(r.meter, name, run, engine.synchronize, time.monotonic, r.options)
    return {
        "j": m.gpu_energy_j / calls[0],
        "s": m.duration_s / calls[0],
        "calls": calls[0],
        "window_s": m.duration_s,
    }


def part_speculative(r: Runner, target: Any, greedy_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    s = r.s
    draft, draft_build_s = _build(s, s.draft, seed=1)
    out: dict[str, Any] = {
        "draft_build_s": draft_build_s,
        "lookahead": s.lookahead,
        "components": [],
        "rows": [],
    }
    cfg = {"device": s.device, "dtype": s.dtype, "draft_model": s.draft, "lookahead": s.lookahead}
    target_arch = s.arch(s.target)
    plain = {
        row["batch"]: row for row in greedy_rows if row.get("series") == "greedy" and row["status"] == "ok"
    }

    def spec_engine(agree: bool) -> HFSpeculativeEngine:
        engine = HFSpeculativeEngine(HFSpeculativeConfig(**cfg, spec_agree=agree), target_arch)
        engine.model, engine.draft = target, draft
        return engine

    # 1. Component costs (cheap) at every batch: draft step, verification of γ+1 tokens.
    costs: list[SpecCosts] = []
    for batch in s.spec_batches:
        if batch not in plain and s.selected("plain-greedy", batch):
            opts = {"decoding": "greedy"}
            engine_p = HFEngine(HFEngineConfig(mode="eager", device=s.device, dtype=s.dtype), target_arch)
            engine_p.model = target
            row = r.measure("speculative", "plain-greedy", engine_p, _point(s, s.target, "hf", batch, opts))
            engine_p.model = None
            engine_p.close()
            if row is None or row["status"] != "ok":
                continue
            plain[batch] = row
            out["rows"].append(row)
        if batch not in plain or not s.selected("components", batch):
            continue
        if not r.budget.allows(
            "speculative", f"components batch {batch}", r.estimate_s("components", "speculative", batch)
        ):
            continue
        t0 = time.monotonic()
        engine = spec_engine(False)
        try:
            engine.prepare_inputs(Batch(batch, s.input_len, s.output_len))
            engine.prefill()
            engine.draft_steps_only(4)  # warm-up
            engine.verify_only(2)
            r.meter.sync = engine.synchronize
            steps = s.output_len - 1  # the draft's context grows over a generation's length, as in decode
            d = _window_cost(r, engine, "draft-step", lambda: engine.draft_steps_only(steps))
            v = _window_cost(r, engine, "verify", lambda: engine.verify_only(8))
        except Exception as exc:  # out of memory at a batch: stored, the run goes on
            log.info("components at batch %d failed: %s", batch, exc)
            out["components"].append(
                {"batch": batch, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
            )
            _free(s.device)
            continue
        finally:
            engine.model = engine.draft = None
            engine.close()
        r.last_cost_s["components"] = (time.monotonic() - t0, batch)
        c = SpecCosts(
            batch,
            s.lookahead,
            d["j"],
            d["s"],
            v["j"],
            v["s"],
            plain[batch]["decode_step_j"],
            plain[batch]["decode_step_s"],
        )
        costs.append(c)
        out["components"].append({"batch": batch, "status": "ok", "draft_step": d, "verify": v, **c.__dict__})
        log.info("components %s", json.dumps(out["components"][-1]))
    out["model"] = model_table(costs, s.lookahead)

    # 2. Constructed agreement (α = 1): both final norms zeroed, plain decoding with the same zeroed norm.
    saved = [m.model.norm.weight.detach().clone() for m in (target, draft)]
    zero_final_norm(target)
    zero_final_norm(draft)
    try:
        for batch in s.spec_batches:
            engine = spec_engine(True)
            row = r.measure(
                "speculative",
                "spec-agree",
                engine,
                _point(s, s.target, "hf-spec", batch, {**cfg, "spec_agree": True}),
            )
            if row is not None:
                row["speculative"] = engine.stats.as_dict()
                out["rows"].append(row)
            engine.model = engine.draft = None
            engine.close()
            engine_p = HFEngine(HFEngineConfig(mode="eager", device=s.device, dtype=s.dtype), target_arch)
            engine_p.model = target
            row = r.measure(
                "speculative",
                "plain-zeroed-norm",
                engine_p,
                _point(s, s.target, "hf", batch, {"zeroed_norm": True}),
            )
            if row is not None:
                out["rows"].append(row)
            engine_p.model = None
            engine_p.close()
    finally:
        import torch

        with torch.no_grad():
            for m, w in zip((target, draft), saved, strict=True):
                m.model.norm.weight.copy_(w)

    # 3. The real random pair (α ≈ 0): the most expensive runs (γ draft steps per returned token), last.
    for batch in s.spec_batches:
        engine = spec_engine(False)
        row = r.measure("speculative", "spec-random", engine, _point(s, s.target, "hf-spec", batch, cfg))
        if row is not None:
            row["speculative"] = engine.stats.as_dict()
            out["rows"].append(row)
        engine.model = engine.draft = None
        engine.close()
    out["ratios"] = measured_ratios(out["rows"], plain)
    costs_run = run_draft_costs(costs, out["rows"])
    if costs_run:  # the model's headline: draft cost from the α = 1 decodes; the isolated one kept beside
        out["model_isolated_draft"] = out["model"]
        out["model"] = {**model_table(costs_run, s.lookahead), "draft_cost": "from the spec-agree decodes"}
    else:
        out["model"]["draft_cost"] = "isolated draft-step windows (no α = 1 decode gave a draft cost)"
    return out  # the draft is freed with this frame


def run_draft_costs(costs: Sequence[SpecCosts], rows: Sequence[dict[str, Any]]) -> list[SpecCosts]:
    """The component costs with each draft step's cost taken from the α = 1 decode at its batch (if run)."""
    agree = {r["batch"]: r for r in rows if r.get("series") == "spec-agree" and r["status"] == "ok"}
    out = []
    for c in costs:
        r = agree.get(c.batch_size)
        if r is None:
            continue
        try:
            j, t = draft_step_from_decode(
                decode_j=r["decode_j"],  # per repetition, as every phase energy
                decode_s=r["decode_s"],
                rounds=r["speculative"]["rounds"],
                draft_steps=r["speculative"]["draft_steps"],
                verify_j=c.verify_j,
                verify_s=c.verify_s,
            )
        except ConfigError as exc:  # the verifications measured apart exceed the decode: no estimate
            log.info("batch %d: no draft cost from the α = 1 decode: %s", c.batch_size, exc)
            continue
        out.append(replace(c, draft_step_j=j, draft_step_s=t))
    return out


def model_table(costs: Sequence[SpecCosts], lookahead: int) -> dict[str, Any]:
    """Modelled ratio to plain decoding per α and batch, and the crossover batch per α (both policies)."""
    table: dict[str, Any] = {"alphas": list(ALPHAS), "per_alpha": []}
    if not costs:
        return table
    for alpha in ALPHAS:
        entry: dict[str, Any] = {"alpha": alpha, "tokens_per_round": tokens_per_round(alpha, lookahead)}
        policies: tuple[Policy, ...] = ("per-row", "batch-min")
        for policy in policies:
            cross = crossover_batch(costs, alpha, policy)
            entry[policy] = {
                "ratio_by_batch": {str(b): ratio for b, ratio in cross.ratios},
                "crossover_batch": cross.batch_size,
                "crossover_status": cross.status,
            }
        table["per_alpha"].append(entry)
    table["measured_alpha_limits"] = {
        str(c.batch_size): {"alpha0": energy_ratio(c, 0.0), "alpha1": energy_ratio(c, 1.0)} for c in costs
    }
    return table


def measured_ratios(rows: Sequence[dict[str, Any]], plain: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured decode J/token of speculation over its plain baseline at the same batch."""
    zeroed = {r["batch"]: r for r in rows if r.get("series") == "plain-zeroed-norm" and r["status"] == "ok"}
    out = []
    for r in rows:
        base = {"spec-random": plain, "spec-agree": zeroed}.get(r.get("series", ""), {}).get(r["batch"])
        if r["status"] == "ok" and base is not None:
            out.append(
                {
                    "series": r["series"],
                    "batch": r["batch"],
                    "acceptance_rate": r["speculative"]["acceptance_rate"],
                    "decode_energy_ratio": r["decode_j"] / base["decode_j"],
                    "total_energy_ratio": r["j_per_output_token"] / base["j_per_output_token"],
                    "decode_time_ratio": r["decode_s"] / base["decode_s"],
                }
            )
    return out


# -- (c) MoE vs dense ------------------------------------------------------------------------------------
def router_spread(
    model: Any, arch: Architecture, device: str, batches: Sequence[int], rows: int = 8, length: int = 512
) -> dict[str, Any]:
    """How the random router spreads a prefill's tokens over experts, per layer, and experts touched per step."""
    import torch

    picks: list[Any] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: picks.append(o[2].reshape(-1, o[2].shape[-1]).cpu()))
        for m in model.modules()
        if type(m).__name__.endswith("TopKRouter")
    ]
    length = min(length, arch.max_context_tokens)
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        ids = torch.randint(0, arch.vocab_size, (rows, length), generator=gen).to(device)
        with torch.inference_mode():
            model(input_ids=ids, logits_to_keep=1)
    finally:
        for h in hooks:
            h.remove()
    experts, k = int(arch.config["num_experts"]), int(arch.config["num_experts_per_tok"])
    layers = []
    rng = random.Random(0)
    for idx in picks:
        load = torch.bincount(idx.reshape(-1), minlength=experts).double()
        share = load / load.sum()
        tokens = idx.shape[0]
        touched = {}
        for b in batches:
            groups = [rng.sample(range(tokens), min(b, tokens)) for _ in range(20)]
            touched[str(b)] = sum(len(set(idx[g].reshape(-1).tolist())) for g in groups) / len(groups)
        layers.append(
            {
                "max_share": float(share.max()),
                "min_share": float(share.min()),
                "cv": float(share.std() / share.mean()),
                "experts_touched_per_step": touched,
            }
        )
    uniform = {str(b): experts * (1 - (1 - k / experts) ** b) for b in batches}
    return {
        "experts": experts,
        "top_k": k,
        "uniform_share": 1 / experts,
        "layers": layers,
        "experts_touched_if_uniform": uniform,
        "note": (
            "Random router weights (normal, std initializer_range) score experts nearly independently of the token, "
            "so every expert gets about top_k/num_experts of the tokens (max/min share and cv per layer above) and "
            "a decode step at batch B touches about E(1-(1-k/E)^B) experts: all 64 from batch ~32 on, i.e. the "
            "whole 7B of expert weights is read each step. A trained router is skewed and token-dependent (hot "
            "experts, correlated choices within a sequence), so at small batch it touches fewer distinct experts "
            "and the random router overstates MoE decode cost there; at large batch both touch every expert."
        ),
    }


def part_moe(r: Runner) -> dict[str, Any]:
    s = r.s
    out: dict[str, Any] = {"rows": [], "builds_s": {}}
    for name in s.trio:
        if not s.selects(name):
            continue
        if not r.budget.allows("moe", f"build {name}", 20.0 if s.device.startswith("cuda") else 0.0):
            continue
        model, build_s = _build(s, name)
        out["builds_s"][name] = build_s
        arch = s.arch(name)
        if "num_experts" in arch.config:
            out["router"] = router_spread(model, arch, s.device, s.moe_batches, length=s.input_len)
        oom = False
        for batch in s.moe_batches:
            if oom:
                out["rows"].append(
                    {"series": name, "batch": batch, "status": "oom", "error": "a smaller batch was oom"}
                )
                continue
            engine = HFEngine(HFEngineConfig(mode="eager", device=s.device, dtype=s.dtype), arch)
            engine.model = model
            row = r.measure("moe", name, engine, _point(s, name, "hf", batch, {}))
            engine.model = None
            engine.close()
            if row is not None:
                out["rows"].append(row)
                oom = row["status"] == "oom"
        del model
        _free(s.device)
    return out


# -- main ------------------------------------------------------------------------------------------------
def open_meter(s: Settings, smoke: bool) -> tuple[EnergyMeter, dict[str, Any]]:
    """Zeus on the first GPU, or a simulated 300 W GPU on the wall clock for the smoke run."""
    if smoke:
        from llm_energy.meters.simulated import constant_gpu_on

        gpu, clock = constant_gpu_on(time.monotonic)
        return EnergyMeter([gpu], clock=clock), {"gpu_name": "simulated (smoke)"}
    from llm_energy.env import collect_env
    from llm_energy.meters import detect_cpus, detect_gpus

    gpus, notes = detect_gpus()
    cpus, cpu_notes = detect_cpus()
    return EnergyMeter(gpus[:1], cpus), collect_env(gpus[:1], cpus, notes + cpu_notes)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output directory (axes.json, axes.log)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, simulated meter")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument(
        "--budget-s", type=float, default=None, help="whole-run budget (default 450 s on the GPU)"
    )
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="SERIES:BATCH",
        default=None,
        help="run only these points (e.g. beam4:8 spec-random:1 olmo-7b:64 components:8); the rest are left out",
    )
    args = ap.parse_args(argv)
    s = smoke_settings() if args.smoke else Settings()
    if args.only:
        bad = [p for p in args.only if p.count(":") != 1 or not p.split(":")[1].isdigit()]
        if bad:
            ap.error(f"--only takes SERIES:BATCH points (e.g. beam4:8); got {bad[0]!r}")
        s.only = frozenset(args.only)
    if args.budget_s is not None:
        s.budget_s = args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "axes.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    shares = {p: v for p, v in s.shares_s.items() if p in args.parts}
    budget = Budget(s.budget_s, shares)
    meter, env = open_meter(s, args.smoke)
    summary: dict[str, Any] = {
        "settings": {k: v for k, v in vars(s).items() if k != "archs"},
        "env": env,
        "args": vars(args),
    }
    try:
        runner = Runner(s, meter, env, budget)
        target = None
        greedy: list[dict[str, Any]] = []
        if "decoding" in args.parts or "speculative" in args.parts:
            target, summary["target_build_s"] = _build(s, s.target)
        if "decoding" in args.parts:
            summary["decoding"] = greedy = part_decoding(runner, target)
        if "speculative" in args.parts:
            summary["speculative"] = part_speculative(runner, target, greedy)
        target = None
        _free(s.device)
        if "moe" in args.parts:
            summary["moe"] = part_moe(runner)
    finally:
        meter.close()
        summary["skipped"] = budget.skipped
        summary["elapsed_s"] = budget.elapsed_s()
        (args.out / "axes.json").write_text(json.dumps(summary, indent=1, default=str))
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    def jpt(row: dict[str, Any]) -> str:
        return f"{row['j_per_output_token']:.4g}" if row.get("status") == "ok" else str(row.get("status"))

    for row in summary.get("decoding", []):
        print(f"decoding {row['series']:>8} bs {row['batch']:>4}: {jpt(row)} J/output token")
    spec = summary.get("speculative", {})
    for ratio in spec.get("ratios", []):
        print(
            f"speculative {ratio['series']:>11} bs {ratio['batch']:>4}: α {ratio['acceptance_rate']:.2f}, "
            f"decode energy x{ratio['decode_energy_ratio']:.2f} of plain"
        )
    for entry in spec.get("model", {}).get("per_alpha", []):
        pr = entry["per-row"]
        print(
            f"model α {entry['alpha']:.1f}: crossover batch {pr['crossover_batch']} ({pr['crossover_status']})"
        )
    for row in summary.get("moe", {}).get("rows", []):
        print(f"moe {row['series']:>12} bs {row['batch']:>4}: {jpt(row)} J/output token")
    print(f"skipped: {len(summary['skipped'])}; elapsed {summary['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()

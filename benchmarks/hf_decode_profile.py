"""Why `hf` cudagraphs decode cost more per token than eager at batch 64 (issue 18, item 4): measure and profile.

For one shape (default Llama-3.1-8B, bf16, batch 64, input 512, output 128) and each variant of the `hf`
engine, sharing one model:

* `eager` -- dynamic cache; at decode no mask, so transformers' sdpa passes ``enable_gqa`` and SDPA reads
  the 8 K/V heads as they are (the dynamic cache is re-concatenated every step instead);
* `cudagraphs-sdpa` -- static cache + CUDA graphs with transformers' sdpa (``grouped_attention: false``,
  the path before the fix): the static cache needs a mask, so sdpa copies every layer's whole cache
  ``H / H_kv`` = 4 times (`repeat_kv`) and attends over all ``input + output`` slots;
* `cudagraphs` -- the same with `grouped_sdpa` (the fix, the engine's default): no copy;
* `compiled`, `compiled-sdpa` -- the same two without CUDA graphs (on request; the CPU smoke runs these),

it measures prefill (ms, J) and a decode step (ms, W, J in total and above idle; one meter window repeats
whole decodes for >= `--window-s`), profiles `--profile-steps` decode steps with torch.profiler (top kernels
per step and attention ops with input shapes, OUT/profile-<variant>.txt), records the SDPA calls of one
decode step (K/V shapes, repeat_kv copies) from an uncompiled forward through the same attention code, and
sets beside the measured step the bytes a step must move by a traffic model (weights + K/V traffic).
Each finished variant is written to OUT/hf_decode_profile.json at once, so a run cut short keeps what it
measured; `--summary-only` prints the table from that file.

    PYTHONPATH=src python3 benchmarks/hf_decode_profile.py $OUT            # H200: ~3.5 min (budget 210 s)
    PYTHONPATH=src python3 benchmarks/hf_decode_profile.py $OUT --smoke    # CPU, tiny model, estimated meter
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llm_energy.architectures import Architecture, load_architecture, matmul_param_count
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.errors import MeasurementWarning
from llm_energy.meters import EnergyMeter
from llm_energy.records import Measurement
from llm_energy.sweep.runner import RunOptions, repeat_in_window

log = logging.getLogger("hf_decode_profile")

VARIANTS: dict[str, tuple[str, bool]] = {
    "eager": ("eager", True),
    "cudagraphs": ("cudagraphs", True),
    "cudagraphs-sdpa": ("cudagraphs", False),
    "compiled": ("compiled", True),
    "compiled-sdpa": ("compiled", False),
}
"""Variant -> (engine mode, grouped_attention)."""

RESULT = "hf_decode_profile.json"


@dataclass
class Settings:
    model: str = "llama-3.1-8b"
    device: str = "cuda"
    dtype: str = "bfloat16"
    batch: int = 64
    input_tokens: int = 512
    output_tokens: int = 128
    # The fix before the old path: if time runs out, the fix's numbers are the ones to have.
    variants: list[str] = field(default_factory=lambda: ["eager", "cudagraphs", "cudagraphs-sdpa"])
    layers: int | None = None
    window_s: float = 2.0
    prefill_window_s: float = 1.0
    idle_s: float = 3.0
    profile_steps: int = 8
    probe_batch: int = 1
    budget_s: float = 210.0
    min_left_s: float = 25.0


def smoke_settings() -> Settings:
    return Settings(
        model="tiny",
        device="cpu",
        dtype="float32",
        batch=3,
        input_tokens=8,
        output_tokens=6,
        variants=["eager", "compiled", "compiled-sdpa"],
        window_s=0.2,
        prefill_window_s=0.1,
        idle_s=0.3,
        profile_steps=3,
        budget_s=600.0,
        min_left_s=0.0,
    )


# -- traffic model -----------------------------------------------------------------------------------------
def bytes_per_step(arch: Architecture, s: Settings, mode: str, grouped: bool) -> dict[str, float]:
    """Bytes one decode step must move, by a simple model: matmul weights read once, plus K/V traffic.

    K/V per layer and tensor (K or V), with n the filled length (mean over the steps) and N = input + output:
    eager reads the cache once for attention and re-concatenates it (read n, write n): 3n positions;
    the static cache with transformers' sdpa reads N, writes g*N (repeat_kv, g = H / H_kv) and reads the
    g*N copy in attention: (1 + 2g) N; grouped_sdpa reads N.
    """
    per_position = arch.num_kv_heads * arch.head_dim * _dtype_bytes(s.dtype)
    mean_len = s.input_tokens + s.output_tokens / 2
    full_len = s.input_tokens + s.output_tokens
    groups = arch.num_heads // arch.num_kv_heads
    if mode == "eager":
        positions = 3 * mean_len
    elif grouped:
        positions = float(full_len)
    else:
        positions = (1 + 2 * groups) * full_len
    kv = 2 * arch.num_layers * s.batch * per_position * positions
    weights = matmul_param_count(arch) * _dtype_bytes(s.dtype)
    return {"weights_gb": weights / 1e9, "kv_gb": kv / 1e9, "total_gb": (weights + kv) / 1e9}


def _dtype_bytes(dtype: str) -> int:
    return 4 if dtype in ("float32", "fp32") else 2


# -- attention probe ---------------------------------------------------------------------------------------
def attention_probe(model: Any, s: Settings, static: bool) -> dict[str, Any]:
    """The SDPA calls of one decode step, uncompiled, through the attention the model is set to.

    A compiled decode traces exactly this Python path (transformers builds the static cache's decode mask
    whether or not it is compiling), so the shapes are the compiled graph's. Batch `probe_batch`; copied
    bytes are scaled to the measured batch.
    """
    import torch
    from transformers import DynamicCache, StaticCache
    from transformers.integrations import sdpa_attention

    calls: list[dict[str, Any]] = []
    repeat, sdpa = sdpa_attention.repeat_kv, torch.nn.functional.scaled_dot_product_attention

    def repeat_kv(x: Any, n: int) -> Any:
        out = repeat(x, n)
        if n > 1:
            calls.append({"op": "repeat_kv", "in": list(x.shape), "out": list(out.shape)})
            calls[-1]["bytes"] = out.numel() * out.element_size()
        return out

    def scaled_dot_product_attention(q: Any, k: Any, v: Any, attn_mask: Any = None, **kw: Any) -> Any:
        calls.append(
            {
                "op": "sdpa",
                "q": list(q.shape),
                "k": list(k.shape),
                "mask": None if attn_mask is None else list(attn_mask.shape),
                "enable_gqa": bool(kw.get("enable_gqa", False)),
            }
        )
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    b = s.probe_batch
    cache: Any = (
        StaticCache(config=model.config, max_cache_len=s.input_tokens + s.output_tokens)
        if static
        else DynamicCache(config=model.config)
    )
    ids = torch.zeros((b, s.input_tokens), dtype=torch.long, device=s.device)
    try:
        with torch.inference_mode():
            model(
                input_ids=ids,
                past_key_values=cache,
                cache_position=torch.arange(s.input_tokens, device=s.device),
            )
            sdpa_attention.repeat_kv = repeat_kv
            torch.nn.functional.scaled_dot_product_attention = scaled_dot_product_attention
            step = torch.arange(s.input_tokens, s.input_tokens + 1, device=s.device)
            model(input_ids=ids[:, :1], past_key_values=cache, cache_position=step, logits_to_keep=1)
    finally:
        sdpa_attention.repeat_kv = repeat
        torch.nn.functional.scaled_dot_product_attention = sdpa
    copies = [c for c in calls if c["op"] == "repeat_kv"]
    layer0 = calls[: len(calls) // max(1, sum(c["op"] == "sdpa" for c in calls))]
    return {
        "attention": str(model.config._attn_implementation),
        "probe_batch": b,
        "layer0_calls": layer0,
        "sdpa_calls_per_step": sum(c["op"] == "sdpa" for c in calls),
        "repeat_kv_calls_per_step": len(copies),
        "repeat_kv_gb_written_per_step": sum(c["bytes"] for c in copies) * s.batch / b / 1e9,
    }


# -- attention alone ---------------------------------------------------------------------------------------
def attention_microbench(arch: Architecture, s: Settings, iters: int = 10) -> dict[str, Any]:
    """One layer's decode attention at the measured shapes, each path alone: time and kernels per call.

    `eager`: the dynamic cache's two concatenations plus transformers' sdpa without a mask (``enable_gqa``),
    at the mean filled length; `static-sdpa`: transformers' sdpa over the whole static cache with its mask
    (repeat_kv); `static-grouped`: `grouped_sdpa` over the same. Needs no compile, so it is measured even if
    the compiled variants run out of time.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from llm_energy.architectures.build import torch_dtype
    from llm_energy.engines.hf_attention import grouped_sdpa_attention_forward

    cuda = s.device.startswith("cuda")
    dtype = torch_dtype(s.dtype)
    b, h, kv, d = s.batch, arch.num_heads, arch.num_kv_heads, arch.head_dim
    full, filled = s.input_tokens + s.output_tokens, s.input_tokens + s.output_tokens // 2
    module = torch.nn.Module()
    module.num_key_value_groups = h // kv  # type: ignore[assignment]
    module.is_causal = True  # type: ignore[assignment]
    gen = torch.Generator(device=s.device).manual_seed(0)

    def randn(*shape: int) -> Any:
        return torch.randn(shape, generator=gen, device=s.device, dtype=dtype)

    query = randn(b, 1, h, d).transpose(1, 2)
    keys, values = randn(b, kv, full, d), randn(b, kv, full, d)
    mask = (torch.arange(full, device=s.device) < filled)[None, None, None, :].expand(b, 1, 1, full)
    past_k, past_v, new = randn(b, kv, filled - 1, d), randn(b, kv, filled - 1, d), randn(b, kv, 1, d)

    def eager() -> Any:
        k, v = torch.cat([past_k, new], dim=-2), torch.cat([past_v, new], dim=-2)
        return sdpa_attention_forward(module, query, k, v, None)

    paths = {
        "eager": eager,
        "static-sdpa": lambda: sdpa_attention_forward(module, query, keys, values, mask),
        "static-grouped": lambda: grouped_sdpa_attention_forward(module, query, keys, values, mask),
    }
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out: dict[str, Any] = {"batch": b, "full_len": full, "filled_len": filled, "layers": arch.num_layers}
    with torch.inference_mode():
        for name, fn in paths.items():
            fn()
            fn()
            sync()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            sync()
            ms = (time.perf_counter() - t0) * 1e3 / iters
            kernels: list[dict[str, Any]] = []
            if cuda:
                from torch.autograd import DeviceType
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    fn()
                    sync()
                kernels = [
                    {"name": e.key[:160], "us": float(e.self_device_time_total)}
                    for e in prof.key_averages()
                    if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0
                ]
                kernels.sort(key=lambda k: -k["us"])
            out[name] = {"ms_per_layer": ms, "ms_per_step": ms * arch.num_layers, "kernels": kernels[:6]}
    return out


# -- profiler ----------------------------------------------------------------------------------------------
KERNEL_CLASSES = (
    ("attention", re.compile(r"fmha|flash|attention|attn|sdpa|mha", re.I)),
    ("gemm", re.compile(r"gemm|nvjet|xmma|cutlass|cublas|splitk|matmul|\bmm\b|addmm|linear", re.I)),
)


def kernel_class(name: str) -> str:
    """`attention`, `gemm` or `other` (copies, elementwise, norms...) by kernel or op name."""
    if name.startswith("triton_"):  # inductor: its names list the fused aten ops, e.g. a copy feeding SDPA
        return "gemm" if name.startswith(("triton_tem", "triton_mm")) else "other"
    for label, pattern in KERNEL_CLASSES:
        if pattern.search(name):
            return label
    return "other"


def profile_decode(engine: HFEngine, s: Settings, variant: str, out: Path) -> dict[str, Any]:
    """Profile `profile_steps` decode steps; write the tables to OUT/profile-<variant>.txt; return totals."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = s.device.startswith("cuda")
    steps = max(1, min(s.profile_steps, engine._require_batch().decode_steps))
    engine.prefill()
    engine.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.monotonic()
    with profile(activities=activities, record_shapes=True) as prof:
        engine._decode_steps(steps)  # the engine's own decode loop, `steps` steps from the end of prefill
        engine.synchronize()
    wall_ms = (time.monotonic() - t0) * 1e3 / steps
    rows: list[tuple[str, int, float]] = []
    for e in prof.key_averages():
        if cuda:
            if e.device_type != DeviceType.CUDA:
                continue
            us = float(e.self_device_time_total)
        else:
            us = float(e.self_cpu_time_total)
        if us > 0:
            rows.append((e.key, int(e.count), us))
    rows.sort(key=lambda r: -r[2])
    total_us = sum(r[2] for r in rows) or 1.0
    by_class: dict[str, float] = {"attention": 0.0, "gemm": 0.0, "other": 0.0}
    for name, _, us in rows:
        by_class[kernel_class(name)] += us / 1e3 / steps
    what = "CUDA kernels (self device time)" if cuda else "CPU ops (self CPU time; no CUDA here)"
    lines = [
        f"variant {variant}: mode {engine.config.mode}, attention {engine.describe().get('attention')}, "
        f"batch {s.batch}, input {s.input_tokens}, output {s.output_tokens}, {steps} decode steps profiled "
        f"({wall_ms:.2f} ms/step wall under the profiler)",
        f"top {what}, per decode step:",
        f"{'ms/step':>9} {'%':>6} {'calls/step':>10}  {'class':<9} name",
    ]
    for name, count, us in rows[:20]:
        lines.append(
            f"{us / 1e3 / steps:9.3f} {100 * us / total_us:6.1f} {count / steps:10.1f}  {kernel_class(name):<9} {name[:150]}"
        )
    lines.append(
        f"total {total_us / 1e3 / steps:.3f} ms/step: "
        + ", ".join(f"{k} {v:.3f}" for k, v in by_class.items())
    )
    if cuda and total_us / 1e3 / steps < 0.3 * wall_ms:
        lines.append(
            "NOTE: kernel time is a small part of the wall time: kernels replayed in CUDA graphs may be missing"
        )
    shaped = [
        e
        for e in prof.key_averages(group_by_input_shape=True)
        if re.search(r"scaled_dot_product|repeat|expand|cat\b|index_copy", e.key)
    ]
    shaped.sort(key=lambda e: -(e.self_device_time_total if cuda else e.self_cpu_time_total))
    if shaped:
        lines.append("")
        lines.append("attention-related ops with input shapes (absent when replayed from a CUDA graph):")
        for e in shaped[:10]:
            us = float(e.self_device_time_total if cuda else e.self_cpu_time_total)
            lines.append(
                f"{us / 1e3 / steps:9.3f} ms/step {e.count / steps:6.1f}/step  {e.key}  {e.input_shapes}"
            )
    (out / f"profile-{variant}.txt").write_text("\n".join(lines) + "\n")
    top = [
        {"name": n[:200], "ms_per_step": us / 1e3 / steps, "calls_per_step": c / steps}
        for n, c, us in rows[:20]
    ]
    return {
        "steps": steps,
        "wall_ms_per_step": wall_ms,
        "kernel_ms_per_step": total_us / 1e3 / steps,
        "by_class_ms_per_step": by_class,
        "top": top,
        "torch_version": torch.__version__,
    }


# -- measurement -------------------------------------------------------------------------------------------
def _energy(m: Measurement, prefix: str) -> tuple[float, float | None]:
    """(energy, energy above idle) in J over the domains starting with `prefix`."""
    domains = m.domains(prefix)
    total = sum(m.energy_j[d] for d in domains)
    dynamic = [m.dynamic_energy_j(d) for d in domains]
    above = (
        None if not domains or any(x is None for x in dynamic) else sum(x for x in dynamic if x is not None)
    )
    return total, above


def run_variant(
    variant: str, model: Any, arch: Architecture, s: Settings, meter: EnergyMeter, out: Path
) -> dict[str, Any]:
    mode, grouped = VARIANTS[variant]
    batch = Batch(s.batch, s.input_tokens, s.output_tokens)
    engine = HFEngine(
        HFEngineConfig(mode=mode, device=s.device, dtype=s.dtype, grouped_attention=grouped),
        arch,
    )
    engine.model = model
    prefix = "gpu:" if s.device.startswith("cuda") else "cpu:"
    row: dict[str, Any] = {"variant": variant, "mode": mode, "grouped_attention": grouped}
    t0 = time.monotonic()
    try:
        engine.prepare(batch)
        row["compile_s"] = time.monotonic() - t0
        row["attention"] = engine.describe().get("attention")
        meter.sync = engine.synchronize
        clock = time.monotonic
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeasurementWarning)
            m, reps = repeat_in_window(
                meter,
                "prefill",
                engine.prefill,
                engine.synchronize,
                clock,
                RunOptions(target_window_s=s.prefill_window_s),
            )
            e, above = _energy(m, prefix)
            row["prefill"] = {"ms": m.duration_s / reps * 1e3, "j": e / reps, "reps": reps}
            row["prefill"]["j_above_idle"] = None if above is None else above / reps
            engine.prefill()
            engine.synchronize()
            m, reps = repeat_in_window(
                meter,
                "decode",
                engine.decode,
                engine.synchronize,
                clock,
                RunOptions(target_window_s=s.window_s),
            )
        steps = reps * batch.decode_steps
        e, above = _energy(m, prefix)
        row["decode"] = {
            "reps": reps,
            "steps": steps,
            "ms_per_step": m.duration_s / steps * 1e3,
            "w": e / m.duration_s if m.duration_s > 0 else None,
            "j_per_step": e / steps,
            "j_per_step_above_idle": None if above is None else above / steps,
            "uncertainty_j_per_step": m.uncertainty_sum_j(prefix) / steps,
            "flags": list(m.flags),
            "source": sorted({m.source[d] for d in m.domains(prefix)}),
        }
        row["output_tokens_per_request"] = engine.generated_tokens()
        row["tokens"] = [[int(t) for t in step.tolist()] for step in engine.output_ids]  # [step][request]
        row["traffic_model"] = bytes_per_step(arch, s, mode, grouped)
        row["traffic_model"]["gb_per_s_at_measured_step"] = row["traffic_model"]["total_gb"] / (
            row["decode"]["ms_per_step"] / 1e3
        )
        try:
            row["profile"] = profile_decode(engine, s, variant, out)
        except Exception as exc:  # the measurement stands without the profile
            log.exception("profile of %s failed", variant)
            row["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            row["probe"] = attention_probe(model, s, static=mode != "eager")
        except Exception as exc:
            log.exception("attention probe of %s failed", variant)
            row["probe"] = {"error": f"{type(exc).__name__}: {exc}"}
        row["status"] = "ok"
    except Exception as exc:
        log.exception("variant %s failed", variant)
        row["status"] = "error"
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        row["wall_s"] = time.monotonic() - t0
        engine.model = None  # shared: the next variant uses it
        engine.close()
    return row


# -- summary -----------------------------------------------------------------------------------------------
def _fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def summary_lines(result: dict[str, Any]) -> list[str]:
    s = result.get("settings", {})
    meter = "GPU (NVML counter)" if str(s.get("device", "")).startswith("cuda") else "CPU (estimated/RAPL)"
    layers = f" ({s['layers']} layers)" if s.get("layers") else ""
    gpu = result.get("env", {}).get("gpu_name") or s.get("device")
    lines = [
        f"hf decode profile on {gpu}: {s.get('model')}{layers} {s.get('dtype')}, batch {s.get('batch')}, "
        f"input {s.get('input_tokens')}, output {s.get('output_tokens')}; energy: {meter}; "
        f"idle {_fmt(result.get('idle_w'), '.1f')} W",
        f"{'variant':<16} {'attention':<13} {'comp s':>6} {'pre ms':>7} {'ms/step':>8} {'W':>6} {'J/step':>7} "
        f"{'J>idle':>7} {'mJ/tok>idle':>11} {'kern ms':>8} {'attn':>6} {'gemm':>6} {'other':>6} "
        f"{'rkv GB':>6} {'model GB':>8} {'GB/s':>6}",
    ]
    by_name = {}
    for r in result.get("rows", []):
        by_name[r["variant"]] = r
        if r.get("status") != "ok":
            lines.append(f"{r['variant']:<16} {r.get('status')}: {r.get('error')}")
            continue
        d, p, t = r["decode"], r.get("profile", {}), r["traffic_model"]
        cls = p.get("by_class_ms_per_step", {})
        above = d.get("j_per_step_above_idle")
        lines.append(
            f"{r['variant']:<16} {str(r.get('attention')):<13} {r['compile_s']:6.1f} {r['prefill']['ms']:7.1f} "
            f"{d['ms_per_step']:8.2f} {_fmt(d['w'], '6.0f')} {d['j_per_step']:7.3f} {_fmt(above, '7.3f')} "
            f"{_fmt(None if above is None else 1e3 * above / s.get('batch', 1), '11.2f')} "
            f"{_fmt(p.get('kernel_ms_per_step'), '8.2f')} {_fmt(cls.get('attention'), '6.2f')} "
            f"{_fmt(cls.get('gemm'), '6.2f')} {_fmt(cls.get('other'), '6.2f')} "
            f"{_fmt(r['probe'].get('repeat_kv_gb_written_per_step'), '6.1f')} {t['total_gb']:8.1f} "
            f"{t['gb_per_s_at_measured_step']:6.0f}"
        )
    eager = by_name.get("eager")
    if eager is not None and eager.get("status") == "ok":
        base = eager["decode"]["j_per_step_above_idle"]
        for r in result.get("rows", []):
            if r["variant"] == "eager" or r.get("status") != "ok":
                continue
            above = r["decode"]["j_per_step_above_idle"]
            time_ratio = r["decode"]["ms_per_step"] / eager["decode"]["ms_per_step"]
            if base is not None and base > 0 and above is not None:
                verdict = "<= eager" if above <= base else "MORE than eager"
                energy = f"{above / base:.2f}x eager's energy above idle per decode step ({verdict})"
            else:
                energy = "no energy above idle to compare"
            same = _agreement(r.get("tokens"), eager.get("tokens"))
            lines.append(
                f"{r['variant']}: {energy}, {time_ratio:.2f}x its time per step; "
                f"{r['output_tokens_per_request']} tokens per request, {same} of eager's greedy tokens"
            )
    for r in result.get("rows", []):
        if r.get("status") == "ok" and "layer0_calls" in r["probe"]:
            calls = r["probe"]["layer0_calls"]
            shown = "; ".join(
                f"repeat_kv {c['in']}->{c['out']}"
                if c["op"] == "repeat_kv"
                else f"sdpa q{c['q']} k{c['k']} mask {c['mask']} gqa {c['enable_gqa']}"
                for c in calls
            )
            lines.append(
                f"{r['variant']} layer-0 decode attention (probe batch {r['probe']['probe_batch']}): {shown}"
            )
    alone = result.get("attention_alone") or {}
    if "error" in alone:
        lines.append(f"attention alone: {alone['error']}")
    elif alone:
        lines.append(
            f"attention alone, decode step of {alone['layers']} layers (batch {alone['batch']}, static cache "
            f"{alone['full_len']} slots, filled {alone['filled_len']}): "
            + ", ".join(
                f"{k} {alone[k]['ms_per_step']:.2f} ms" for k in ("eager", "static-sdpa", "static-grouped")
            )
        )
        for k in ("eager", "static-sdpa", "static-grouped"):
            if alone[k]["kernels"]:
                lines.append(
                    f"  {k} kernels per layer: "
                    + "; ".join(f"{x['us']:.0f} us {x['name'][:70]}" for x in alone[k]["kernels"][:4])
                )
    if result.get("skipped"):
        lines.append(f"skipped (time budget): {', '.join(result['skipped'])}")
    lines.append(
        "columns: J/step and W from one meter window of whole decodes; J>idle subtracts idle power x time; "
        "kern ms = profiled kernel time per step (attn/gemm/other by kernel name); rkv GB = bytes repeat_kv "
        "writes per step; model GB = bytes a step must move by the traffic model; GB/s = model GB / measured step"
    )
    return lines


def _agreement(tokens: Any, reference: Any) -> str:
    """The share of equal tokens (position by position) as text, or `-` when either is missing."""
    if not tokens or not reference or len(tokens) != len(reference):
        return "-"
    pairs = [(a, b) for x, y in zip(tokens, reference, strict=True) for a, b in zip(x, y, strict=False)]
    return f"{100 * sum(a == b for a, b in pairs) / max(1, len(pairs)):.1f}%"


# -- main --------------------------------------------------------------------------------------------------
def open_meter(s: Settings) -> tuple[EnergyMeter, dict[str, Any]]:
    """The first GPU through Zeus on CUDA; the CPU (RAPL, else TDP x utilisation, estimated) elsewhere."""
    from llm_energy.env import collect_env
    from llm_energy.meters import detect_cpus, detect_gpus

    cpus, cpu_notes = detect_cpus()
    if s.device.startswith("cuda"):
        gpus, notes = detect_gpus()
        return EnergyMeter(gpus[:1]), collect_env(gpus[:1], [], notes)
    return EnergyMeter([], cpus), collect_env([], cpus, cpu_notes)


def _architecture(s: Settings) -> Architecture:
    arch = load_architecture(s.model)
    if s.layers is None:
        return arch
    config = MappingProxyType({**arch.config, "num_hidden_layers": s.layers})
    return dataclasses.replace(arch, name=f"{arch.name}-{s.layers}l", config=config)


@contextlib.contextmanager
def _log_to(out: Path) -> Iterator[None]:
    handler = logging.FileHandler(out / "hf_decode_profile.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output directory")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model, estimated CPU meter")
    ap.add_argument(
        "--summary-only", action="store_true", help="print the table of OUT's result file and exit"
    )
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--input", type=int, default=None, dest="input_tokens")
    ap.add_argument("--output", type=int, default=None, dest="output_tokens")
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers (faster compile)")
    ap.add_argument(
        "--budget-s", type=float, default=None, help="start no variant after this (default 210 s)"
    )
    ap.add_argument("--window-s", type=float, default=None)
    ap.add_argument("--profile-steps", type=int, default=None)
    args = ap.parse_args(argv)
    if args.summary_only:
        result = json.loads((args.out / RESULT).read_text())
        print("\n".join(summary_lines(result)))
        return dict(result)
    s = smoke_settings() if args.smoke else Settings()
    for name in (
        "variants",
        "model",
        "batch",
        "input_tokens",
        "output_tokens",
        "layers",
        "budget_s",
        "window_s",
        "profile_steps",
    ):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    args.out.mkdir(parents=True, exist_ok=True)
    with _log_to(args.out):
        result = _run(s, args.out, t_start)
    print("\n".join(summary_lines(result)))
    return result


def _run(s: Settings, out: Path, t_start: float) -> dict[str, Any]:
    import torch

    from llm_energy.architectures import build_model

    arch = _architecture(s)
    meter, env = open_meter(s)
    result: dict[str, Any] = {"settings": dataclasses.asdict(s), "env": env, "rows": [], "skipped": []}

    def save() -> None:
        result["elapsed_s"] = time.monotonic() - t_start
        (out / RESULT).write_text(json.dumps(result, indent=1, default=str))

    try:
        if s.device.startswith("cuda"):
            torch.zeros(1, device=s.device)  # CUDA context before idle, so idle is the loaded-process idle
            meter.sync = torch.cuda.synchronize
        idle = meter.measure_idle(s.idle_s)
        prefix = "gpu:" if s.device.startswith("cuda") else "cpu:"
        result["idle_w"] = sum(w for d, w in idle.idle_power_w.items() if d.startswith(prefix))
        t0 = time.monotonic()
        model = build_model(arch, device=s.device, dtype=s.dtype, init="normal", seed=0)
        result["build_s"] = time.monotonic() - t0
        log.info("built %s in %.1f s; idle %.1f W", arch.name, result["build_s"], result["idle_w"])
        try:
            result["attention_alone"] = attention_microbench(arch, s)
        except Exception as exc:
            log.exception("attention microbenchmark failed")
            result["attention_alone"] = {"error": f"{type(exc).__name__}: {exc}"}
        save()
        for variant in s.variants:
            left = s.budget_s - (time.monotonic() - t_start)
            if left < s.min_left_s:
                result["skipped"].append(variant)
                log.warning("skipping %s: %.0f s left", variant, left)
                continue
            log.info("variant %s (%.0f s left)", variant, left)
            row = run_variant(variant, model, arch, s, meter, out)
            log.info("%s", json.dumps(row, default=str))
            result["rows"].append(row)
            save()
            print(
                f"{variant}: {row['status']} in {row['wall_s']:.0f} s (t = {time.monotonic() - t_start:.0f} s)",
                flush=True,
            )
    finally:
        meter.close()
        save()
    return result


if __name__ == "__main__":
    main()

"""The seed study's headline, like for like: HF eager (padded static batches) vs vLLM on the same trace samples.

One seeded sample of each trace (default 150 requests of Azure conv and of Azure code 2023, drawn among the
requests with input ≤ 8,192 and output ≤ 512 tokens, the lengths the seed study kept) runs on one engine
configuration per process, each at its own largest feasible batch:

- `run --engine hf --mode eager --batch auto`: HF transformers eager, requests in trace order in static
  batches of B, each padded to its longest prompt and run to its longest output (`run_validation`, as
  `llm-energy validate`). B is the largest batch whose every padded batch of the sample fits the GPU memory
  left after the model is loaded (`--memory-fraction` of it), by the memory model of `hf_peak_bytes`: the
  prefill holds the whole KV cache of the batch's prompts plus one layer's activations, decode the KV cache of
  prompt + output (and the concatenation copy of one layer). Each trace gets its own B. A batch that still
  runs out of memory makes the run start again at 3/4 of B (recorded in the file).
- `run --engine vllm --mode cudagraphs --batch 256`: vLLM with CUDA graphs and continuous batching, every
  request submitted at once, `max_num_seqs` 256 (≥ the sample: no request waits for a slot).
- `summary DIR`: J/request of both engines per trace (total and above idle), the saving with its bounds
  (the meters' bounds of both runs), beside the seed's 72.18% (conv) and 37.58% (code); writes
  `summary.json` and `summary.md`.
- `plan`: CPU only: the samples, the batch `--batch auto` would pick for a given free memory, the peak memory
  and the modelled run time of each trace (from the recorded H100/H200 HF eager rates, see `hf_time_s`).

Every run is written as soon as it ends (`DIR/val-<engine>-<mode>-<trace>-b<B>.json`, a `ValidationRun`).
`--deadline-s` makes a static run skip a trace whose modelled time no longer fits (listed in the log) rather
than be killed half-way. No GPU setting is changed.

    python3 benchmarks/headline_gpu.py run --engine vllm --mode cudagraphs --batch 256 --out-dir OUT
    python3 benchmarks/headline_gpu.py run --engine hf --mode eager --batch auto --out-dir OUT --deadline-s 330
    python3 benchmarks/headline_gpu.py summary OUT
    python3 benchmarks/headline_gpu.py plan                      # CPU: batch, memory and time per trace
    python3 benchmarks/headline_gpu.py run --engine hf --model tiny --device cpu --batch 8 --sample 12 \
        --max-input-tokens 256 --max-output-tokens 16 --out-dir OUT   # CPU smoke run of the real engine
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TRACES = ("azure-conv", "azure-code")
SEED_SAVING = {"azure-conv": 0.7218, "azure-code": 0.3758}
"""The seed study's headline savings (vLLM's optimisations vs the PyTorch baseline, Azure traces 2024, A6000)."""
H200_FREE_GIB = 123.0
"""Device memory free after loading Llama-3.1-8B in bf16 on the H200 (~139 GiB usable, 15 GiB of weights,
~1 GiB of CUDA context): what `plan` assumes; `run` reads the real figure."""

log = logging.getLogger("headline_gpu")


def draw_samples(
    traces: list[str], n: int, seed: int, max_in: int | None, max_out: int | None
) -> dict[str, tuple[Any, int]]:
    """The seeded sample of each trace and the number of eligible requests it was drawn from."""
    from llm_energy.validation.offline import sample_requests
    from llm_energy.workloads import load_trace

    return {
        t: sample_requests(load_trace(t), n, seed=seed, max_input_tokens=max_in, max_output_tokens=max_out)
        for t in traces
    }


def hf_peak_bytes(
    arch: Any, rows: np.ndarray, lin: np.ndarray, lout: np.ndarray, dtype_bytes: int = 2
) -> np.ndarray:
    """Peak device memory above the weights of HF eager padded batches (rows × input × output), bytes.

    Prefill: the KV cache of every prompt token plus one layer's activations per token (residual, norm,
    q/k/v, attention output, and the gated MLP's three intermediate tensors alive at once). Decode: the KV
    cache of prompt + output, plus one layer's copy made when the dynamic cache concatenates a new token.
    """
    from llm_energy.architectures import kv_cache_bytes

    kv = kv_cache_bytes(arch, 1, 1, dtype_bytes)
    qkv = (arch.num_heads + 2 * arch.num_kv_heads) * arch.head_dim
    act = (3 * arch.intermediate_size + 5 * arch.hidden_size + qkv) * dtype_bytes
    prefill = rows * lin * (kv + act)
    decode = rows * (lin + lout) * kv * (1 + 2 / arch.num_layers)
    return np.maximum(prefill, decode).astype(float)


def largest_feasible_batch(arch: Any, lin: np.ndarray, lout: np.ndarray, free_bytes: float) -> int:
    """Largest B ≤ len(sample) whose every padded batch of the sample (trace order) fits `free_bytes`; ≥ 1."""
    from llm_energy.modeling.padded import padded_shapes

    for b in range(len(lin), 0, -1):
        rows, pin, pout = padded_shapes(lin, lout, b)
        if hf_peak_bytes(arch, rows, pin, pout).max() <= free_bytes:
            return b
    return 1


SLOW_S_PER_ROW_TOKEN = 0.23e-6
"""Decode-step time per row × context token of HF eager, slow bound: the H100's (calibration, host B: 0.15–0.21 µs
from batch 64 at input 128/512 vs 2048), the H200's faster memory not counted."""
LIKELY_S_PER_ROW_TOKEN = 0.16e-6
"""The same scaled by the H200's memory bandwidth (4.8 vs 3.35 TB/s): what `--deadline-s` decisions use."""


def hf_time_s(
    lin: np.ndarray, lout: np.ndarray, batch: int, s_per_row_token: float = SLOW_S_PER_ROW_TOKEN
) -> float:
    """Modelled seconds of an HF eager validation run on the H200, the warm-up generation included.

    Per padded batch: prefill at 36k tokens/s (H200 framework run: 35.8k at input 512), slowed by
    (1 + L/16k) for attention at long prompts; decode steps of 21 ms (H200: 19.8–23.4 ms at batch 1–128,
    context ~550) plus `s_per_row_token` per row × context token (the dynamic cache copies and attention
    reads the whole KV cache every step). `run_validation` first runs the first padded batch once unmeasured
    (warm-up): counted too.
    """
    from llm_energy.modeling.padded import padded_shapes

    rows, pin, pout = padded_shapes(lin, lout, batch)
    per = rows * pin / (36_000.0 / (1 + pin / 16_000.0))
    per = per + np.maximum(pout - 1, 0) * (0.021 + s_per_row_token * rows * (pin + pout / 2))
    return float(per.sum() + per[0])


def free_device_bytes(device: str) -> float | None:
    """Bytes the caching allocator could still hand out on `device` (free + reserved but unused); None on CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def run(args: argparse.Namespace) -> int:
    """Open one engine configuration and run every trace's sample on it (see the module docstring)."""
    from llm_energy.architectures import load_architecture
    from llm_energy.errors import OutOfMemory
    from llm_energy.validation.engine import ValidationEngine, engine_point

    t_start = time.monotonic()
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    samples = draw_samples(args.traces, args.sample, args.seed, args.max_input_tokens, args.max_output_tokens)
    longest = max(int((s.input_tokens + s.output_tokens).max()) for s, _ in samples.values())
    static = args.engine == "hf" or args.batching == "static"
    options: dict[str, Any] = json.loads(args.options)
    if args.batch == "auto" and not static:
        raise SystemExit("--batch auto is for static engines; give vLLM its max_num_seqs")
    fixed = None if args.batch == "auto" else int(args.batch)
    if args.engine == "vllm":
        options.setdefault("max_num_seqs", fixed)
        options.setdefault("max_model_len", longest)
    point = engine_point(
        model=args.model,
        engine=args.engine,
        mode=args.mode,
        device=args.device,
        seed=args.seed,
        options=options,
        batch_size=fixed or args.sample,
        input_len=max(int(s.input_tokens.max()) for s, _ in samples.values()),
        output_len=max(int(s.output_tokens.max()) for s, _ in samples.values()),
        max_model_len=longest,
    )
    arch = load_architecture(args.model)
    written = 0
    with ValidationEngine(point, idle_s=args.idle_s, on_status=log.info) as opened:
        log.info("%s %s loaded after %.0f s", args.engine, point.mode, time.monotonic() - t_start)
        free = free_device_bytes(point.device) if fixed is None else None
        if fixed is None:
            if free is None:
                free = args.free_gib * 2**30
            log.info(
                "memory for batches: %.1f GiB free, %.0f%% of it used",
                free / 2**30,
                100 * args.memory_fraction,
            )
        for name, (sample, eligible) in samples.items():
            lin, lout = sample.input_tokens, sample.output_tokens
            batch = fixed or largest_feasible_batch(arch, lin, lout, args.memory_fraction * float(free or 0))
            oom: list[int] = []
            while True:
                if static:
                    need_s = hf_time_s(lin, lout, batch, LIKELY_S_PER_ROW_TOKEN)
                    left_s = args.deadline_s - (time.monotonic() - t_start) if args.deadline_s else None
                    log.info(
                        "%s: batch %d (%d padded batches), modelled %.0f s%s",
                        name, batch, -(-len(lin) // batch), need_s,
                        "" if left_s is None else f", {left_s:.0f} s left",
                    )  # fmt: skip
                    if left_s is not None and need_s > left_s:
                        log.info("%s: SKIPPED, the modelled time does not fit the deadline", name)
                        break
                t1 = time.monotonic()
                try:
                    result = opened.run(
                        sample,
                        batch,
                        batching=args.batching,
                        eligible_requests=eligible,
                        filters={
                            "max_input_tokens": args.max_input_tokens,
                            "max_output_tokens": args.max_output_tokens,
                        },
                    )
                except OutOfMemory as exc:
                    oom.append(batch)
                    log.info("%s: batch %d ran out of memory (%s)", name, batch, exc)
                    _empty_cache(point.device)
                    if not static or batch == 1:
                        break
                    batch = max(1, batch * 3 // 4)
                    continue
                note = f"headline_gpu.py; out-of-memory at batch {oom}" if oom else "headline_gpu.py"
                if static and fixed is None:
                    note += f"; batch = the largest whose padded batches fit {args.memory_fraction:.0%} of {free / 2**30:.1f} GiB"
                from dataclasses import replace

                result = replace(result, latency_note=f"{result.latency_note} [{note}]".strip())
                label = Path(name).stem if Path(name).suffix else name  # a trace file: its stem, no folders
                path = out / f"val-{args.engine}-{point.mode}-{label}-b{batch}.json"
                result.save(path)
                written += 1
                log.info(
                    "%s b%d: %d requests, %.0f ± %.0f J (%.1f J/request) in %.0f s -> %s",
                    name, batch, result.requests, result.energy_j, result.uncertainty_j, result.j_per_request,
                    time.monotonic() - t1, path.name,
                )  # fmt: skip
                break
    log.info("%d/%d runs written to %s after %.0f s", written, len(samples), out, time.monotonic() - t_start)
    return 0 if written == len(samples) else 1


def _empty_cache(device: str) -> None:
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def saving(base: Any, opt: Any) -> dict[str, float]:
    """1 − opt/base per request, with bounds from both runs' meter bounds."""
    b, db = base.energy_j / base.requests, base.uncertainty_j / base.requests
    o, do = opt.energy_j / opt.requests, opt.uncertainty_j / opt.requests
    if b - db <= 0:  # no GPU energy measured (a CPU smoke run): no saving to state
        return {"saving": float("nan"), "low": float("nan"), "high": float("nan")}
    return {"saving": 1 - o / b, "low": 1 - (o + do) / (b - db), "high": 1 - (o - do) / (b + db)}


def dynamic_j_per_request(run: Any) -> float:
    """Joules per request above idle: energy − idle power × the time the energy was measured over."""
    seconds = sum(b.duration_s for b in run.batches) if run.batches else run.duration_s
    return (run.energy_j - run.idle_power_w * seconds) / run.requests


def summary(args: argparse.Namespace) -> int:
    """Pair each trace's HF and vLLM runs in DIR, print and write the table."""
    from llm_energy.validation.offline import ValidationRun

    runs = [ValidationRun.load(p) for p in sorted(args.dir.glob("val-*.json"))]
    rows = []
    order = {t: k for k, t in enumerate(TRACES)}
    for trace in sorted(dict.fromkeys(r.trace for r in runs), key=lambda t: (order.get(t, len(order)), t)):
        base = next((r for r in runs if r.trace == trace and r.batching == "static"), None)
        opt = next((r for r in runs if r.trace == trace and r.batching == "continuous"), None)
        row: dict[str, Any] = {"trace": trace, "seed_saving": SEED_SAVING.get(trace)}
        for role, r in (("baseline", base), ("optimised", opt)):
            if r is None:
                row[role] = None
                continue
            seconds = sum(b.duration_s for b in r.batches) if r.batches else r.duration_s
            row[role] = {
                "engine": r.engine, "mode": r.mode, "batch_size": r.batch_size, "batching": r.batching,
                "requests": r.requests, "eligible_requests": r.eligible_requests,
                "input_tokens_max": max(r.input_tokens), "output_tokens_max": max(r.output_tokens),
                "padded_batches": len(r.batches), "j_per_request": r.j_per_request,
                "unc_j_per_request": r.uncertainty_j / r.requests,
                "dynamic_j_per_request": dynamic_j_per_request(r), "idle_power_w": r.idle_power_w,
                "seconds": seconds, "mean_power_w": r.energy_j / seconds if seconds else None,
                "gpu": r.env.get("gpu_name"), "host": r.env.get("host"), "created_at": r.created_at,
                "note": r.latency_note,
            }  # fmt: skip
        if base is not None and opt is not None:
            if base.input_tokens != opt.input_tokens or base.output_tokens != opt.output_tokens:
                row["error"] = "the two runs did not run the same requests"
            else:
                row["measured"] = saving(base, opt)
                d_b, d_o = dynamic_j_per_request(base), dynamic_j_per_request(opt)
                row["measured_dynamic"] = 1 - d_o / d_b if d_b > 0 else float("nan")
        rows.append(row)
    (args.dir / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "| trace | requests (of eligible) | HF eager: batch, J/request | vLLM CG: max_num_seqs, J/request "
        "| saving measured [bounds] | saving above idle | seed |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        b, o, s = r["baseline"], r["optimised"], r.get("measured")
        req = b or o
        cells = [
            r["trace"],
            f"{req['requests']} (of {req['eligible_requests']})",
            _run_cell(b),
            _run_cell(o),
            "—" if s is None else f"{100 * s['saving']:.1f}% [{100 * s['low']:.1f}, {100 * s['high']:.1f}]",
            "—" if "measured_dynamic" not in r else f"{100 * r['measured_dynamic']:.1f}%",
            "—" if r["seed_saving"] is None else f"{100 * r['seed_saving']:.2f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (args.dir / "summary.md").write_text(text)
    print(text)
    return 0 if rows and all("measured" in r for r in rows) else 1


def _run_cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "—"
    return f"{m['batch_size']}, {m['j_per_request']:.1f} ± {m['unc_j_per_request']:.1f}"


def plan(args: argparse.Namespace) -> int:
    """Print the samples, the batch `--batch auto` would choose, its peak memory and modelled time."""
    from llm_energy.architectures import load_architecture
    from llm_energy.modeling.padded import padded_shapes

    arch = load_architecture(args.model)
    samples = draw_samples(args.traces, args.sample, args.seed, args.max_input_tokens, args.max_output_tokens)
    free = args.memory_fraction * args.free_gib * 2**30
    total = total_likely = 0.0
    for name, (s, eligible) in samples.items():
        lin, lout = s.input_tokens, s.output_tokens
        b = largest_feasible_batch(arch, lin, lout, free)
        rows, pin, pout = padded_shapes(lin, lout, b)
        peak = hf_peak_bytes(arch, rows, pin, pout).max() / 2**30
        t = hf_time_s(lin, lout, b)
        likely = hf_time_s(lin, lout, b, LIKELY_S_PER_ROW_TOKEN)
        total += t
        total_likely += likely
        useful = float((lin + lout).sum())
        padded = float((rows * (pin + pout)).sum())
        print(
            f"{name}: {len(lin)} of {eligible} eligible; input max {lin.max()} mean {lin.mean():.0f}, output max "
            f"{lout.max()} mean {lout.mean():.0f}; HF eager batch {b} ({len(rows)} padded batches, peak "
            f"{peak:.1f} GiB of {free / 2**30:.1f}), modelled {likely:.0f}–{t:.0f} s; padded tokens / real tokens {padded / useful:.2f}"
        )
    print(
        f"HF eager, both traces: modelled {total_likely:.0f}–{total:.0f} s (plus ~25 s to import and load, 3 s idle)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def sample_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--traces", nargs="+", default=list(TRACES))
        p.add_argument("--sample", type=int, default=150)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--max-input-tokens", type=int, default=8192)
        p.add_argument("--max-output-tokens", type=int, default=512)
        p.add_argument("--model", default="llama-3.1-8b")
        p.add_argument(
            "--memory-fraction", type=float, default=0.85, help="share of free memory batches may use"
        )
        p.add_argument(
            "--free-gib", type=float, default=H200_FREE_GIB, help="free memory where it cannot be read"
        )

    p_run = sub.add_parser("run", help="run every trace's sample on one engine configuration")
    sample_args(p_run)
    p_run.add_argument("--engine", default="hf")
    p_run.add_argument("--mode", default=None)
    p_run.add_argument("--device", default="cuda")
    p_run.add_argument(
        "--batch", default="auto", help="batch size (vLLM: max_num_seqs), or auto (static engines)"
    )
    p_run.add_argument("--batching", choices=["static", "continuous"], default=None)
    p_run.add_argument("--options", default="{}", help="engine options as JSON")
    p_run.add_argument("--idle-s", type=float, default=3.0)
    p_run.add_argument(
        "--deadline-s", type=float, default=None, help="static runs: skip a trace that cannot end by then"
    )
    p_run.add_argument("--out-dir", type=Path, required=True)
    p_sum = sub.add_parser("summary", help="the table from a folder of runs")
    p_sum.add_argument("dir", type=Path)
    p_plan = sub.add_parser("plan", help="CPU: batch, memory and modelled time per trace")
    sample_args(p_plan)
    args = ap.parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers, force=True
    )
    return {"run": run, "summary": summary, "plan": plan}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

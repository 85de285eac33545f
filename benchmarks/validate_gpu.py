"""Validate the workload model on a GPU: several traces × batch sizes with one model load per engine setup.

`llm-energy validate` does one (trace, batch size) per invocation and loads the model each time; this
script runs the same `run_validation` for every pair, loading the model once (HF) or once per batch size
(vLLM, whose batch knob `max_num_seqs` is fixed at load). Each run is written as soon as it finishes
(`<out>/val-<engine>-<mode>-<trace>-b<B>.json`), so a run cut short keeps what it measured. Compare later
on any machine: `llm-energy validate --measured FILE --profile P`.

    python benchmarks/validate_gpu.py --engine hf --mode eager --traces azure-conv azure-code \
        --batch-sizes 16 64 --sample 500 --max-input-tokens 2048 --max-output-tokens 128 --out-dir OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Run the validations; return 0 when every one finished."""
    from llm_energy.sweep.spec import make_point
    from llm_energy.validation.engine import ValidationEngine, engine_point
    from llm_energy.validation.offline import sample_requests
    from llm_energy.workloads import load_trace

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--engine", default="hf")
    ap.add_argument("--mode", default=None)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--traces", nargs="+", default=["azure-conv", "azure-code"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-input-tokens", type=int, default=None)
    ap.add_argument("--max-output-tokens", type=int, default=None)
    ap.add_argument("--options", default="{}", help="engine options as JSON")
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument(
        "--points",
        nargs="*",
        default=[],
        help="homogeneous points BATCH:IN:OUT measured first with the loaded engine (run_point), stored in --db",
    )
    ap.add_argument("--db", type=Path, default=None, help="store for --points (default: <out-dir>/points.db)")
    args = ap.parse_args(argv)

    samples = {
        name: sample_requests(
            load_trace(name),
            args.sample,
            seed=args.seed,
            max_input_tokens=args.max_input_tokens,
            max_output_tokens=args.max_output_tokens,
        )
        for name in args.traces
    }
    longest = max(int((s.input_tokens + s.output_tokens).max()) for s, _ in samples.values())
    per_batch_load = args.engine == "vllm"
    setups: list[tuple[int | None, list[int]]] = (
        [(b, [b]) for b in args.batch_sizes] if per_batch_load else [(None, args.batch_sizes)]
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from llm_energy.store import Store

    store = Store(args.db or args.out_dir / "points.db")
    done = 0
    for load_batch, batch_sizes in setups:
        options: dict[str, Any] = json.loads(args.options)
        if args.engine == "vllm":
            options.update(max_num_seqs=load_batch, max_model_len=longest)  # one load per batch size
        point = engine_point(
            model=args.model,
            engine=args.engine,
            mode=args.mode,
            device=args.device,
            seed=args.seed,
            options=options,
            batch_size=max(batch_sizes),
            input_len=max(int(s.input_tokens.max()) for s, _ in samples.values()),
            output_len=max(int(s.output_tokens.max()) for s, _ in samples.values()),
            max_model_len=longest,
        )
        t0 = time.monotonic()
        with ValidationEngine(point, idle_s=args.idle_s, on_status=print) as opened:
            print(f"loaded in {time.monotonic() - t0:.0f} s", flush=True)
            for spec in args.points:
                b, lin, lout = (int(x) for x in spec.split(":"))
                if b > max(batch_sizes):
                    continue  # vLLM: a point runs with the load whose max_num_seqs holds it
                if per_batch_load and load_batch != max(args.batch_sizes):
                    continue  # measured once, with the largest load
                fields = {**point.model_dump(), "batch_size": b, "input_len": lin, "output_len": lout}
                results = opened.worker.run(make_point(**fields))
                store.write_runs(results)
                r = results[0]
                per_tok = r.phases["total"].energy_per_token_j if r.status == "ok" else float("nan")
                print(f"point b{b} in{lin} out{lout}: {r.status} {per_tok:.4f} J/out-token", flush=True)
            for batch in batch_sizes:
                for name, (sample, eligible) in samples.items():
                    t1 = time.monotonic()
                    run = opened.run(
                        sample,
                        batch,
                        eligible_requests=eligible,
                        filters={
                            "max_input_tokens": args.max_input_tokens,
                            "max_output_tokens": args.max_output_tokens,
                        },
                    )
                    path = args.out_dir / f"val-{args.engine}-{point.mode}-{name}-b{batch}.json"
                    run.save(path)
                    done += 1
                    print(
                        f"{name} b{batch}: {run.requests} requests, {run.energy_j:,.0f} ± {run.uncertainty_j:,.0f} J"
                        f" ({run.j_per_request:.1f} J/request) in {time.monotonic() - t1:.0f} s -> {path.name}",
                        flush=True,
                    )
    total = sum(len(b) for _, b in setups) * len(samples)
    print(f"{done}/{total} validation runs written to {args.out_dir}")
    return 0 if done == total else 1


if __name__ == "__main__":
    sys.exit(main())

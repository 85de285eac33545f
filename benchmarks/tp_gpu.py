"""Tensor parallelism on 2 / 4 / 8 GPUs: TP sizes x batch sizes, and replicas vs one TP group.

Each TP size is one group (`GroupWorker`, the sweep's own path): rank 0 here measures every GPU of
the group, ranks 1..N-1 are follower processes. Every run goes into a SQLite store in OUT; the
summary (`tp_gpu.json`) holds, per point, latency per phase and energy summed over the group's GPUs
and per GPU, the lockstep overhead of each group (a synchronise-and-barrier round trip), and the
replicas-vs-TP tables (`llm_energy.validation.parallel`). Never asserts on time.

Plans (the TP1 batches the replica comparison needs are added automatically):

    # nvidia-h200-x2 (or any 2 GPUs): Llama-3.1-8B TP1 vs TP2, batch 1/8/64, in 512 / out 128
    PYTHONPATH=src python3 benchmarks/tp_gpu.py $OUT --plan 8b --tp-sizes 1 2
    # nvidia-h200-x4: TP1 / TP2 / TP4
    PYTHONPATH=src python3 benchmarks/tp_gpu.py $OUT --plan 8b --tp-sizes 1 2 4
    # nvidia-h200-x4 / x8: Llama-3.1-70B shapes (bf16, random weights), TP 2 / 4 (/ 8)
    PYTHONPATH=src python3 benchmarks/tp_gpu.py $OUT --plan 70b --tp-sizes 2 4 8

Points already measured (an ok run in OUT/runs.db) are not measured again, so a plan too long for one
command can be split over several with the same OUT (e.g. `--tp-sizes 2 4`, then `--tp-sizes 2 8`);
the comparison tables are built from every run stored there. With fewer visible GPUs than the largest
TP size asked for, it refuses before loading anything (exit 2). `--smoke` runs the tiny model on the CPU with 2 gloo ranks (what the tests run).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

PLANS: dict[str, dict[str, Any]] = {
    "8b": {"model": "llama-3.1-8b", "tp_sizes": [1, 2], "batch_sizes": [1, 8, 64], "replica_tp": 1},
    "70b": {"model": "llama-3.1-70b", "tp_sizes": [2, 4, 8], "batch_sizes": [1, 8, 64], "replica_tp": 2},
    "smoke": {"model": "tiny", "tp_sizes": [1, 2], "batch_sizes": [1, 2], "replica_tp": 1},
}

log = logging.getLogger("tp_gpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output directory (JSON, log, SQLite store)")
    ap.add_argument("--plan", choices=sorted(PLANS), default="8b")
    ap.add_argument("--tp-sizes", nargs="+", type=int, help="TP sizes (default: the plan's)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, help="total batch sizes (default: 1 8 64)")
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--window-s", type=float, default=2.0, help="each phase window lasts at least this")
    ap.add_argument("--idle-s", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--mode", default="eager")
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU, 2 gloo ranks")
    args = ap.parse_args(argv)
    if args.smoke:
        args.plan, args.input_len, args.output_len = "smoke", 8, 4
        args.window_s, args.idle_s = 0.2, 0.05
    plan = PLANS[args.plan]
    args.model = plan["model"]
    args.replica_tp = plan["replica_tp"]
    args.tp_sizes = sorted(set(args.tp_sizes or plan["tp_sizes"]))
    args.batch_sizes = sorted(set(args.batch_sizes or plan["batch_sizes"]))
    args.device = "cpu" if args.smoke else "cuda"
    return args


def points_per_tp(args: argparse.Namespace) -> dict[int, list[int]]:
    """Batch sizes to measure at each TP size: the asked ones, plus what the replicas need.

    Replicas of TP k for a TP-N group at total batch B run batch B·k/N each (when it divides).
    """
    plan: dict[int, set[int]] = {tp: set(args.batch_sizes) for tp in args.tp_sizes}
    k = args.replica_tp
    for n in args.tp_sizes:
        if n <= k or n % k:
            continue
        copies = n // k
        for total in args.batch_sizes:
            if total % copies == 0:
                plan.setdefault(k, set()).add(total // copies)
    return {tp: sorted(batches) for tp, batches in sorted(plan.items())}


def refuse_if_too_few_gpus(args: argparse.Namespace) -> str | None:
    """Return why the run is refused (None: it can run), before anything loads."""
    from llm_energy.errors import ConfigError
    from llm_energy.parallel.checks import check_visible_gpus

    if args.device == "cpu":
        return None
    import torch

    try:
        check_visible_gpus(max(points_per_tp(args)), args.device, torch.cuda.device_count())
    except ConfigError as exc:
        return str(exc)
    return None


def run_group(args: argparse.Namespace, tp: int, batches: list[int], store: Any) -> dict[str, Any]:
    """Measure every batch at TP size `tp` with the model loaded once; return rows and overhead."""
    from llm_energy.sweep.runner import RunOptions
    from llm_energy.sweep.spec import make_point
    from llm_energy.sweep.worker import GroupWorker

    stored = store.point_statuses()
    points = [
        make_point(
            model=args.model,
            engine="hf",
            mode=args.mode,
            batch_size=b,
            input_len=args.input_len,
            output_len=args.output_len,
            device=args.device,
            tp_size=tp,
        )
        for b in batches
    ]
    done = [p.batch_size for p in points if "ok" in stored.get(p.point_id(), set())]
    points = [p for p in points if p.batch_size not in done]
    rows: list[dict[str, Any]] = []
    group: dict[str, Any] = {"tp_size": tp, "rows": rows, "already_stored": done}
    if not points:
        return group
    options = RunOptions(target_window_s=args.window_s, repeats=args.repeats)
    worker = GroupWorker(points[0], options, idle_s=args.idle_s, sweep_name=f"tp_gpu-{args.plan}")
    t0 = time.perf_counter()
    try:
        worker.open()
        group["load_s"] = worker.load_s
        for point in points:
            log.info("tp %d batch %d", tp, point.batch_size)
            results = worker.run(point)
            store.write_runs(results)
            rows += [summarise(r) for r in results]
            if any(r.status == "oom" for r in results):
                log.info("tp %d: out of memory at batch %d; larger batches skipped", tp, point.batch_size)
                break
        if worker.engine is not None:
            group["lockstep_sync_s"] = sync_round_trip_s(worker.engine)
    except Exception as exc:  # noqa: BLE001 - a failed group is recorded and the study goes on
        log.exception("tp %d failed", tp)
        group["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        worker.close()
    group["wall_s"] = time.perf_counter() - t0
    return group


def sync_round_trip_s(engine: Any, rounds: int = 50) -> float:
    """Median time of one `synchronize()` (for TP: device sync + command + barrier on every rank)."""
    import statistics

    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        engine.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def summarise(run: Any) -> dict[str, Any]:
    """One run as a row: latency per phase, energy summed over the group's GPUs and per GPU."""
    c = run.config
    row: dict[str, Any] = {
        "tp_size": int(c.get("tp_size", 1)),
        "batch": c["batch_size"],
        "status": run.status,
        "error": run.error,
        "run_id": run.run_id,
    }
    if run.status != "ok":
        return row
    gpu = any(p.measurement.domains("gpu:") for p in run.phases.values())
    prefix = "gpu:" if gpu else ""
    for name in ("prefill", "decode", "total"):
        if name not in run.phases:
            continue
        p = run.phases[name]
        m = p.measurement
        row[f"{name}_s"] = p.duration_s
        row[f"{name}_energy_j"] = m.energy_sum_j(prefix) / p.repetitions
        row[f"{name}_uncertainty_j"] = m.uncertainty_sum_j(prefix) / p.repetitions
        row[f"{name}_energy_per_gpu_j"] = {d: m.energy_j[d] / p.repetitions for d in m.domains(prefix)}
    row["energy_domains"] = "gpu" if gpu else "cpu (no GPU: smoke run)"
    row["j_per_output_token"] = row["total_energy_j"] / (c["batch_size"] * c["output_len"])
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the study; return the exit status (2: refused)."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(args.out / "tp_gpu.log"), logging.StreamHandler(sys.stderr)],
        force=True,
    )
    refused = refuse_if_too_few_gpus(args)
    if refused is not None:
        log.error("refused: %s", refused)
        (args.out / "tp_gpu.json").write_text(json.dumps({"refused": refused}, indent=2) + "\n")
        print(f"refused: {refused}")
        return 2

    import torch
    import transformers

    from llm_energy.store import Store
    from llm_energy.validation.parallel import comparison_table

    plan = points_per_tp(args)
    log.info("plan %s: %s", args.plan, plan)
    summary: dict[str, Any] = {
        "plan": args.plan,
        "model": args.model,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "mode": args.mode,
        "points": {str(k): v for k, v in plan.items()},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.version.cuda,
        },
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "groups": [],
        "comparisons": {},
    }
    with Store(args.out / "runs.db") as store:
        for tp, batches in plan.items():
            summary["groups"].append(run_group(args, tp, batches, store))
        runs = store.read_runs(status="ok")
    dtype = "float32" if args.device == "cpu" else "bfloat16"
    for n in args.tp_sizes:
        if n <= args.replica_tp or n % args.replica_tp:
            continue
        summary["comparisons"][f"tp{n}_vs_{n // args.replica_tp}x_tp{args.replica_tp}"] = comparison_table(
            runs,
            total_batches=args.batch_sizes,
            model=args.model,
            gpus=n,
            input_len=args.input_len,
            output_len=args.output_len,
            mode=args.mode,
            dtype=dtype,
            replica_tp=args.replica_tp,
        )
    (args.out / "tp_gpu.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_summary(summary)
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    """Print one line per point and per comparison."""
    print(f"{summary['model']} in {summary['input_len']} / out {summary['output_len']} ({summary['plan']})")
    for group in summary["groups"]:
        sync = group.get("lockstep_sync_s")
        extra = f", sync {sync * 1e3:.2f} ms" if sync is not None else ""
        if group["already_stored"]:
            extra += f", already stored: batch {group['already_stored']}"
        print(
            f"TP{group['tp_size']}: load {group.get('load_s', float('nan')):.1f} s{extra} {group.get('error', '')}"
        )
        for r in group["rows"]:
            if r["status"] != "ok":
                print(f"  batch {r['batch']:>3}: {r['status']} {r['error']}")
                continue
            print(
                f"  batch {r['batch']:>3}: prefill {r['prefill_s'] * 1e3:8.1f} ms  decode {r['decode_s']:7.3f} s  "
                f"total {r['total_s']:7.3f} s  {r['total_energy_j']:9.1f} J  {r['j_per_output_token']:.4f} J/token"
            )
    for name, rows in summary["comparisons"].items():
        for r in rows:
            if "missing" in r:
                print(f"{name} batch {r['total_batch']}: {r['missing']}")
            else:
                print(
                    f"{name} batch {r['total_batch']}: energy TP/replicas {r['energy_ratio_tp_over_replicas']:.3f}, "
                    f"latency TP/replicas {r['latency_ratio_tp_over_replicas']:.3f}"
                )


if __name__ == "__main__":
    sys.exit(main())

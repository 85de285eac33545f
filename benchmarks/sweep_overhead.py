"""Sweep driver overhead: time inside meter windows / wall time per point, model already loaded.

Runs a sweep spec through the real `run_sweep` (so it also stores the runs and resumes) and, for
every measured point after the first of its group (the first one also loads the model), prints

    busy = Σ window durations of the point's runs,   wall = time since the previous point finished

The windows are where the GPU does the measured work; the rest is preparation (compile / CUDA-graph
capture, one warm-up generation), the driver and the store write. Prints a table and the median ratio;
never asserts.

    python benchmarks/sweep_overhead.py SPEC.yaml --db runs.db [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from llm_energy.store import Store
from llm_energy.sweep.spec import load_spec
from llm_energy.sweep.sweep import SweepSummary, run_sweep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--db", required=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    rows: list[dict[str, Any]] = []
    state = {"t": time.monotonic(), "measured": 0, "group": None}

    def on_point(s: SweepSummary) -> None:
        now = time.monotonic()
        if s.measured > state["measured"] and s.last is not None:
            r = s.last
            cfg = r.config
            group = (cfg.get("model"), cfg.get("engine"), cfg.get("mode"))
            busy = sum(p.measurement.duration_s for name, p in r.phases.items() if name != "idle")
            first = group != state["group"]
            rows.append(
                {
                    "engine": cfg.get("engine"),
                    "mode": cfg.get("mode"),
                    "batch": cfg.get("batch_size"),
                    "input": cfg.get("input_len"),
                    "output": cfg.get("output_len"),
                    "status": r.status,
                    "busy_s": busy * spec.repeats,
                    "wall_s": now - state["t"],
                    "first_in_group": first,
                    "compile_s": r.compile_s,
                    "total_j_per_tok": r.phases["total"].energy_per_token_j if "total" in r.phases else None,
                }
            )
            row = rows[-1]
            print(
                f"{row['engine']}/{row['mode']} bs{row['batch']} in{row['input']}/out{row['output']} "
                f"{row['status']}: busy {row['busy_s']:.1f} s / wall {row['wall_s']:.1f} s "
                f"= {row['busy_s'] / row['wall_s']:.1%} (compile {row['compile_s']:.1f} s)"
                f"{' [first: includes load]' if first else ''}",
                flush=True,
            )
            state["group"] = group
        state["measured"] = s.measured
        state["t"] = now

    with Store(args.db) as store:
        summary = run_sweep(spec, store, on_point=on_point)
    steady = [r["busy_s"] / r["wall_s"] for r in rows if not r["first_in_group"] and r["status"] == "ok"]
    if steady:
        print(
            f"median busy/wall over {len(steady)} points (model loaded): {statistics.median(steady):.1%} "
            f"(min {min(steady):.1%}, max {max(steady):.1%})"
        )
    print(
        f"{summary.measured} measured, {summary.ok} ok runs, {summary.oom} oom, {summary.error} error, "
        f"{summary.skipped} skipped, {summary.infeasible} infeasible"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"rows": rows, "median_busy_over_wall": statistics.median(steady) if steady else None},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()

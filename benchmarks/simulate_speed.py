"""Simulator speed: an hour of a trace on a simulated cluster, wall time per policy.

The target (issue 20): an hour of Azure conv on 8 simulated GPUs in under a minute on 2 cores. Prints the
wall time of the whole `simulate` call (profile and trace loading, the SimPy run, the summary), the
SimPy run alone, requests and simulated seconds per wall second, and the reconfigurations. Prints,
never asserts.

    python benchmarks/simulate_speed.py [--trace azure-conv] [--gpus 8] [--policies single,per-class,dynamic]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from llm_energy.simulate import SimConfig, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="azure-conv")
    parser.add_argument("--profile", default="h100-llama-3.1-8b-vllm")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--policies", default="single,per-class,dynamic")
    args = parser.parse_args()
    print(
        f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    for policy in args.policies.split(","):
        cfg = SimConfig(trace=args.trace, profile=args.profile, gpus=args.gpus, policy=policy,
                        time_scale=args.time_scale)  # fmt: skip
        start = time.perf_counter()
        r = simulate(cfg)
        wall = time.perf_counter() - start
        print(
            f"{policy:>9}: {wall:6.2f} s wall ({r.wall_s:.2f} s SimPy run) for {r.summary.requests:,} requests "
            f"over {r.totals.span_s:,.0f} simulated s on {args.gpus} GPUs: "
            f"{r.summary.requests / wall:,.0f} req/s, {r.totals.span_s / wall:,.0f}× real time "
            f"({sum(r.reconfigurations.values()):,} reconfigurations)"
        )


if __name__ == "__main__":
    main()

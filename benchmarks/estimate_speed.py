"""Speed of `estimate`: 1,000,000 requests against the bundled profile, as a ratio to the 1 s target.

Draws lengths shaped like the Azure conv trace (resampled with replacement, seeded), then times
`estimate_trace` for each method (median of 5 after one warm-up). Prints; never asserts.

    python benchmarks/estimate_speed.py [--requests 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from llm_energy.estimate import METHODS, estimate_trace
from llm_energy.modeling.profile import load_profile
from llm_energy.workloads import load_trace

TARGET_S = 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    trace = load_trace("azure-conv")
    idx = rng.integers(0, len(trace), args.requests)
    lin, lout = trace.input_tokens[idx], trace.output_tokens[idx]
    profile = load_profile()
    for method in METHODS:
        estimate_trace(lin[:1000], lout[:1000], profile, method=method)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            estimate_trace(lin, lout, profile, method=method)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(
            f"{method:10s} {args.requests:,} requests: median {med:.3f} s = {med / TARGET_S:.2f}x the {TARGET_S:.0f} s target"
        )


if __name__ == "__main__":
    main()

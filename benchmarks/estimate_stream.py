"""`llm-energy estimate` end to end on 1M and 10M synthetic requests: wall time and peak memory (prints only).

Writes Azure-conv-shaped synthetic traces (lengths resampled with replacement from the bundled trace, seeded)
to a temporary folder once, then times the library call (`estimate_chunks` over the file's chunks) in this
process. The end-to-end CLI figures in docs/results/model-accuracy-h200.md come from `farm-bench` (command
there). Goals (issue): 1M < 1 s, 10M < 10 s on 2 cores, peak memory < 500 MB at 10M.

    python benchmarks/estimate_stream.py [--rows 1000000 10000000] [--dir /tmp/llm-energy-bench]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llm_energy.estimate import estimate_chunks
from llm_energy.modeling.profile import load_profile
from llm_energy.workloads import iter_trace_chunks, load_trace


def synthetic(path: Path, rows: int) -> Path:
    """A seeded Azure-conv-shaped length list of `rows` requests (written once)."""
    if not path.exists():
        trace = load_trace("azure-conv")
        idx = np.random.default_rng(0).integers(0, len(trace), rows)
        frame = pd.DataFrame(
            {"input_tokens": trace.input_tokens[idx], "output_tokens": trace.output_tokens[idx]}
        )
        frame.to_csv(path, index=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/llm-energy-bench"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    profile = load_profile()
    for rows in args.rows:
        path = synthetic(args.dir / f"synthetic-{rows}.csv", rows)
        t0 = time.perf_counter()
        chunks = (
            (c.input_tokens, c.output_tokens)
            for c in iter_trace_chunks(str(path), input_col="input_tokens", output_col="output_tokens")
        )
        est = estimate_chunks(chunks, profile)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{rows:>11,} requests: {wall:6.2f} s (read + estimate), {rows / wall / 1e6:.2f} M requests/s, "
            f"peak RSS so far {peak_mb:,.0f} MB; {est.total_kwh:.2f} kWh ± {est.uncertainty_j / est.total_j:.1%}"
        )


if __name__ == "__main__":
    main()

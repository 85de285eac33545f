"""Streaming a huge trace: rows/s and peak memory of `iter_trace_chunks` against a 2 GB budget.

Writes a 10,000,000-row Azure-shaped CSV (`TIMESTAMP` with 7 fractional digits, `ContextTokens`,
`GeneratedTokens`) to a temporary folder, or takes an existing trace path, then streams it chunk by
chunk and prints the rows read, the seconds taken and the peak RSS of this process
(`resource.getrusage(...).ru_maxrss`) as a ratio to 2 GB. The file is written by a child process, so
writing it does not count towards the peak. Prints, never asserts.

    python benchmarks/trace_streaming.py [--rows 10000000] [--chunk-rows 1000000] [--path TRACE]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llm_energy.workloads import iter_trace_chunks

BUDGET_BYTES = 2 * 1024**3
WRITE_CHUNK_ROWS = 1_000_000


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def write_azure_csv(path: Path, rows: int, seed: int = 0) -> tuple[int, int]:
    """Write an Azure-shaped CSV with Poisson-like gaps in 100 ns units; return the token totals."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-11-16T18:15:46.6805900", "ns")
    last_100ns = 0
    total_in = total_out = 0
    with path.open("w") as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for lo in range(0, rows, WRITE_CHUNK_ROWS):
            n = min(WRITE_CHUNK_ROWS, rows - lo)
            offsets_100ns = last_100ns + np.cumsum(rng.integers(0, 4_000_000, n))  # mean gap 0.2 s
            last_100ns = int(offsets_100ns[-1])
            stamps = np.datetime_as_string(start + offsets_100ns * 100, unit="ns")  # 9 digits, 'T'
            stamps = np.char.replace(stamps.astype("U29"), "T", " ")
            stamps = stamps.astype("U27")  # keep 7 fractional digits, like Azure
            inp = rng.integers(1, 8192, n)
            out = rng.integers(1, 1024, n)
            total_in += int(inp.sum())
            total_out += int(out.sum())
            pd.DataFrame({"TIMESTAMP": stamps, "ContextTokens": inp, "GeneratedTokens": out}).to_csv(
                f, header=False, index=False
            )
    return total_in, total_out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)
    ap.add_argument("--path", help="stream this trace instead of writing one")
    ap.add_argument("--write", help=argparse.SUPPRESS)  # child mode: write the CSV and its totals
    args = ap.parse_args()
    if args.write:
        print(*write_azure_csv(Path(args.write), args.rows))
        return
    with tempfile.TemporaryDirectory() as tmp:
        expected = None
        if args.path:
            path = Path(args.path)
        else:
            path = Path(tmp) / "azure_like.csv"
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--write", str(path)],
                check=True,
                capture_output=True,
                text=True,
            )
            total_in, total_out = map(int, done.stdout.split())
            expected = (total_in, total_out)
            print(
                f"wrote {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in a child process in "
                f"{time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        t0 = time.perf_counter()
        rows = chunks = total_in = total_out = 0
        last_s = 0.0
        for chunk in iter_trace_chunks(str(path), chunk_rows=args.chunk_rows):
            rows += len(chunk)
            chunks += 1
            total_in += int(chunk.input_tokens.sum())
            total_out += int(chunk.output_tokens.sum())
            if chunk.arrival_s is not None:
                last_s = float(chunk.arrival_s[-1])
        elapsed_s = time.perf_counter() - t0
    peak = peak_rss_bytes()
    print(
        f"streamed {rows:,} rows in {chunks} chunks in {elapsed_s:.1f} s ({rows / elapsed_s:,.0f} rows/s); "
        f"last arrival {last_s:,.1f} s"
    )
    if expected is not None:
        print(f"token totals match the written file: {(total_in, total_out) == expected}")
    print(f"peak RSS {peak / 1e6:,.0f} MB = {peak / BUDGET_BYTES:.2f} x the 2 GB budget")


if __name__ == "__main__":
    main()

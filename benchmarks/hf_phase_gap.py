"""Where does a whole HF generation spend time that neither of its phases does? (a GPU diagnostic)

`test_run_point_on_gpu_measures_each_phase` found, for the tiny model in `cudagraphs` mode on an H200, a
generation 5.9 ms longer than its prefill plus its decode measured apart. `generate()` is `prefill()` then
`decode()`, so the difference is in what runs between them: here each mode times, wall clock and
synchronised, N prefills in a row, N decodes in a row, and N generations (prefill, decode, prefill, ...), and
prints the gap per generation, then the ten host-side calls that take longest in one generation under the
torch profiler (CPU time), where a switch between CUDA graphs would show.

    python benchmarks/hf_phase_gap.py [--modes eager,compiled,cudagraphs] [--n 50] --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _time_ms(fn: Callable[[], Any], sync: Callable[[], None], n: int) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / n


def _top_cpu_ops(engine: Any, k: int = 10) -> list[dict[str, Any]]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        engine.generate()
        engine.synchronize()
    rows = sorted(prof.key_averages(), key=lambda e: e.cpu_time_total, reverse=True)[:k]
    return [{"name": e.key, "calls": e.count, "cpu_ms": e.cpu_time_total / 1e3} for e in rows]


def run_mode(mode: str, n: int, batch: tuple[int, int, int], dtype: str, device: str) -> dict[str, Any]:
    """Time prefill, decode and generate of one prepared batch in `mode`."""
    from llm_energy.architectures import load_architecture
    from llm_energy.engines.base import Batch
    from llm_energy.engines.hf import HFEngine, HFEngineConfig

    engine = HFEngine(HFEngineConfig(mode=mode, device=device, dtype=dtype), load_architecture("tiny"))
    engine.load()
    engine.prepare(Batch(*batch))
    for _ in range(3):  # past any recording
        engine.generate()
    prefill_ms = _time_ms(engine.prefill, engine.synchronize, n)
    engine.prefill()
    decode_ms = _time_ms(engine.decode, engine.synchronize, n)
    generate_ms = _time_ms(engine.generate, engine.synchronize, n)
    out = {
        "mode": mode, "n": n, "batch": list(batch), "prefill_ms": prefill_ms, "decode_ms": decode_ms,
        "generate_ms": generate_ms, "gap_ms": generate_ms - prefill_ms - decode_ms,
        "top_cpu_ops_one_generate": _top_cpu_ops(engine),
    }  # fmt: skip
    engine.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", default="eager,compiled,cudagraphs")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cuda", help="cpu: a smoke run of the script (eager only)")
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args(argv)
    rows = []
    for mode in a.modes.split(","):
        r = run_mode(mode, a.n, (8, 64, 32), a.dtype, a.device)
        rows.append(r)
        print(f"{mode:>10}: prefill {r['prefill_ms']:.2f} ms, decode {r['decode_ms']:.2f} ms, generate "
              f"{r['generate_ms']:.2f} ms, gap {r['gap_ms']:+.2f} ms per generation (n={a.n})", flush=True)  # fmt: skip
        for op in r["top_cpu_ops_one_generate"][:6]:
            print(f"{'':>12}{op['cpu_ms']:8.2f} ms cpu  x{op['calls']:<4} {op['name'][:90]}", flush=True)
    a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Foundation GPU study: engine modes x batch sizes, bandwidth ratio, weight sensitivity, meter
agreement and meter overhead, on one GPU, in one process (the model loads once per mode).

Prints tables and ratios, writes every run into a SQLite store (`--db`) and a JSON summary
(`--summary`); never asserts on time. Used for docs/results/foundation-h100.md:

    python benchmarks/foundation_gpu.py --modes eager --agreement --overhead --db $OUT/eager.db
    python benchmarks/foundation_gpu.py --modes cudagraphs --sensitivity-batch 8 --overhead --db $OUT/cg.db
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

import torch

from llm_energy.architectures import load_architecture, reinit_parameters, weight_bytes
from llm_energy.engines.base import Batch
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.env import collect_env
from llm_energy.errors import CounterUnavailable
from llm_energy.meters import EnergyMeter, detect_cpus, detect_gpus
from llm_energy.records import RunResult
from llm_energy.store import Store
from llm_energy.sweep.runner import RunOptions, measure_phases, run_point
from llm_energy.sweep.spec import make_point

PUBLISHED_BANDWIDTH_BPS = 3.35e12  # H100 SXM HBM3 datasheet


class CounterlessGpu:
    """The same GPU with its energy counter hidden, so the meter integrates sampled power."""

    def __init__(self, gpu: Any) -> None:
        self.gpu = gpu

    index = property(lambda self: self.gpu.index)
    update_period_s = property(lambda self: self.gpu.update_period_s)

    def total_energy_mj(self) -> int:
        raise CounterUnavailable("hidden for the agreement study")

    def power_mw(self) -> int:
        return int(self.gpu.power_mw())

    def info(self) -> dict[str, Any]:
        return dict(self.gpu.info())


def measured_copy_bandwidth_bps() -> float:
    """Device-to-device copy bandwidth (bytes read + written per second), median of 20."""
    n = 2 * 1024**3
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    times = []
    for _ in range(25):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del a, b
    return 2 * n / statistics.median(times[5:])


def time_loop(fn: Any, duration_s: float) -> float:
    """Run fn until duration_s passed; return calls per second."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < duration_s:
        fn()
        n += 1
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def overhead_study(engine: HFEngine, gpu: Any, trial_s: float, rounds: int) -> dict[str, Any]:
    """Throughput of engine.decode with no meter, with counter windows, with a sampler thread (ABC x rounds)."""
    counter_meter = EnergyMeter([gpu], sync=engine.synchronize)
    sampled_meter = EnergyMeter([CounterlessGpu(gpu)], sync=engine.synchronize)  # starts a 20 ms sampler
    sampled_meter.samplers[gpu.index].stop()
    engine.prefill()
    rates: dict[str, list[float]] = {"none": [], "counter": [], "sampler": []}
    for _ in range(rounds):
        rates["none"].append(time_loop(engine.decode, trial_s))
        with counter_meter.window("o"):
            rates["counter"].append(time_loop(engine.decode, trial_s))
        sampled_meter.samplers[gpu.index].start()
        with sampled_meter.window("o"):
            rates["sampler"].append(time_loop(engine.decode, trial_s))
        sampled_meter.samplers[gpu.index].stop()
    counter_meter.close()
    sampled_meter.close()
    base = statistics.median(rates["none"])
    return {
        "mode": engine.config.mode,
        "decode_calls_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "slowdown_counter": 1 - statistics.median(rates["counter"]) / base,
        "slowdown_sampler": 1 - statistics.median(rates["sampler"]) / base,
        "spread_none": (max(rates["none"]) - min(rates["none"])) / base,
        "raw": rates,
    }


def agreement_study(gpu: Any, loads: dict[str, Any], window_s: float) -> list[dict[str, Any]]:
    """Counter vs power-sampled energy over the same windows."""
    out = []
    for label, fn in loads.items():
        counter_meter = EnergyMeter([gpu], sync=torch.cuda.synchronize)
        sampled_meter = EnergyMeter([CounterlessGpu(gpu)], sync=torch.cuda.synchronize, sampler_period_s=0.02)
        counter_meter.begin_window(label)
        sampled_meter.begin_window(label)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < window_s:
            fn()
        torch.cuda.synchronize()
        s = sampled_meter.end_window(label)
        c = counter_meter.end_window(label)
        counter_meter.close()
        sampled_meter.close()
        ec, es = c.energy_j[f"gpu:{gpu.index}"], s.energy_j[f"gpu:{gpu.index}"]
        out.append(
            {
                "load": label,
                "window_s": c.duration_s,
                "counter_j": ec,
                "sampled_j": es,
                "counter_unc_j": c.uncertainty_j[f"gpu:{gpu.index}"],
                "sampled_unc_j": s.uncertainty_j[f"gpu:{gpu.index}"],
                "mean_power_w": ec / c.duration_s,
                "rel_diff": (es - ec) / ec,
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--modes", nargs="+", default=["eager", "cudagraphs"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 64])
    ap.add_argument("--input-len", type=int, default=512)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--window-s", type=float, default=3.0)
    ap.add_argument("--sensitivity-batch", type=int, default=0)
    ap.add_argument("--agreement", action="store_true")
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--db", required=True)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args()

    gpus, notes = detect_gpus()
    gpu = gpus[0]
    cpus, cpu_notes = detect_cpus()
    env = collect_env([gpu], cpus, notes + cpu_notes)
    summary: dict[str, Any] = {"env": env, "runs": [], "args": vars(args)}
    print(
        f"GPU {env['gpu_name']} driver {env['driver']} update period {gpu.update_period_s * 1e3:.0f} ms",
        flush=True,
    )
    bw = measured_copy_bandwidth_bps()
    summary["copy_bandwidth_bps"] = bw
    print(f"device copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    arch = load_architecture(args.model)
    limit_s = weight_bytes(arch) / PUBLISHED_BANDWIDTH_BPS
    summary["decode_floor_s"] = {"published": limit_s, "measured_copy": weight_bytes(arch) / bw}

    store = Store(args.db)
    options = RunOptions(target_window_s=args.window_s)
    with EnergyMeter([gpu], cpus) as meter:
        idle = meter.measure_idle(3.0)
        summary["idle_power_w"] = dict(meter.idle_power_w)
        print(f"idle power {meter.idle_power_w}", flush=True)
        for mode in args.modes:
            engine = HFEngine(HFEngineConfig(mode=mode, device="cuda", dtype="bfloat16"), arch)
            meter.sync = engine.synchronize
            t0 = time.monotonic()
            engine.load()
            load_s = time.monotonic() - t0
            print(f"[{mode}] loaded in {load_s:.1f} s", flush=True)
            for bs in args.batch_sizes:
                point = make_point(
                    model=args.model,
                    engine="hf",
                    mode=mode,
                    batch_size=bs,
                    input_len=args.input_len,
                    output_len=args.output_len,
                    device="cuda",
                )
                results = run_point(engine, meter, point, env=env, options=options, load_s=load_s, idle=idle)
                for r in results:
                    store.write_run(r)
                    summary["runs"].append(_row(r, limit_s))
                    print(json.dumps(summary["runs"][-1]), flush=True)
                if args.overhead and bs == 1 and results[0].status == "ok":
                    summary.setdefault("overhead", []).append(
                        overhead_study(engine, gpu, trial_s=2.0, rounds=5)
                    )
                    print(json.dumps(summary["overhead"][-1]), flush=True)
                if bs == args.sensitivity_batch and results[0].status == "ok":
                    batch = Batch(bs, args.input_len, args.output_len)
                    for init in ("uniform", "zeros"):
                        reinit_parameters(engine.model, init, seed=0)  # in place: graphs stay valid
                        phases = measure_phases(engine, meter, batch, time.monotonic, options)
                        cfg = {**results[0].config, "init": init, "point_id": None}
                        r = RunResult(
                            run_id=uuid.uuid4().hex,
                            config=cfg,
                            env=env,
                            phases={**phases, "idle": results[0].phases["idle"]},
                            created_at=results[0].created_at,
                        )
                        store.write_run(r)
                        summary["runs"].append(_row(r, limit_s))
                        print(json.dumps(summary["runs"][-1]), flush=True)
                    engine.close()
                    engine.load()  # back to normal init for later points
            if args.agreement:
                batch = Batch(64, args.input_len, args.output_len)
                engine.prepare(batch)
                x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
                loads = {
                    f"{mode} decode bs64": engine.decode,
                    "bf16 GEMM 8192^3": lambda: x @ x,
                    "idle": lambda: time.sleep(0.05),
                }
                engine.prefill()
                summary["agreement"] = agreement_study(gpu, loads, window_s=6.0)
                for row in summary["agreement"]:
                    print(json.dumps(row), flush=True)
            engine.close()
    store.close()
    with open(args.summary, "w") as fh:
        json.dump(summary, fh, indent=1, default=str)


def _row(r: RunResult, limit_s: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "mode": r.config.get("mode"),
        "batch": r.config.get("batch_size"),
        "init": r.config.get("init"),
        "status": r.status,
        "error": r.error,
        "compile_s": round(r.compile_s, 1),
    }
    for name, p in r.phases.items():
        if name == "idle":
            continue
        row[f"{name}_ms"] = p.duration_s * 1e3
        row[f"{name}_j"] = p.energy_j
        row[f"{name}_unc_j"] = p.uncertainty_j
        row[f"{name}_j_per_tok"] = p.energy_per_token_j
        row[f"{name}_w"] = p.measurement.mean_power_w()
        row[f"{name}_reps"] = p.repetitions
    if "decode" in r.phases:
        steps = r.config["output_len"] - 1
        row["ms_per_step"] = r.phases["decode"].duration_s / steps * 1e3
        row["x_bandwidth_floor"] = r.phases["decode"].duration_s / steps / limit_s
    return row


if __name__ == "__main__":
    main()

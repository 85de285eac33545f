"""Online serving on the GPU: launch a server, replay the Azure conv trace at 1x, 2x, 4x, write JSON.

For each time scale s, a W-second wall-clock window of the trace (trace seconds [start, start + W·s),
arrivals divided by s) is replayed open-loop against one server launched by llm-energy on
127.0.0.1 (vLLM's API server with CUDA graphs by default, or `transformers serve` in continuous
batching), with SLO ttft=2s,tpot=100ms. Per rate it records p90 TTFT/TPOT, SLO attainment, J/request
and J/token over the steady state, the client-token window and the GPU-work window, and the
frontend-lag verdict; every run is also stored in <out>/serving.db (per-request joules for an
online/offline comparison: `llm_energy.store.serving.read_serving_requests`).

    PYTHONPATH=src python3 benchmarks/online_gpu.py OUT [--server vllm|transformers] [--window-s 60]
        [--scales 1,2,4] [--model llama-3.1-8b] [--vllm-mode cudagraphs] [--max-num-seqs 256]

Budget with the defaults (vLLM, CUDA graphs): ~140 s server start + 3 x (60 s load + drain + 2 s
idle) ≈ 6-7 minutes; at most ~8.5 minutes when every rate drains for the full 60 s request timeout. `--smoke` runs the tiny model on CPU against `transformers serve` (or
`--server stub`) with short lengths, for testing this script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from llm_energy.records import Request
from llm_energy.serving.loadgen import parse_slo, schedule_from_trace
from llm_energy.serving.servers import ServerGroup, ServerProcess, launch_servers
from llm_energy.serving.servers.stub import stub_server
from llm_energy.serving.session import ServingRun, replay_servers
from llm_energy.store import Store
from llm_energy.store.serving import write_serving_run
from llm_energy.workloads import load_trace

log = logging.getLogger("online_gpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="output directory")
    p.add_argument("--server", default="vllm", choices=["vllm", "transformers", "stub"])
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--trace", default="azure-conv")
    p.add_argument("--window-s", type=float, default=60.0, help="wall seconds replayed per rate")
    p.add_argument("--window-start-s", type=float, default=0.0, help="start of the window in trace seconds")
    p.add_argument("--scales", default="1,2,4", help="time scales (rate multipliers)")
    p.add_argument("--slo", default="ttft=2s,tpot=100ms")
    p.add_argument("--vllm-mode", default="cudagraphs", choices=["cudagraphs", "eager"])
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--timeout-s", type=float, default=60.0, help="bound on each request (and on the drain)")
    p.add_argument("--idle-s", type=float, default=2.0)
    p.add_argument("--max-input-tokens", type=int, default=None, help="clip prompt lengths")
    p.add_argument("--max-output-tokens", type=int, default=None, help="clip output lengths")
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU, short lengths, one short rate")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.device = "tiny", "cpu"
        args.window_s = min(args.window_s, 4.0)
        args.scales = "8" if args.scales == "1,2,4" else args.scales
        args.max_input_tokens = args.max_input_tokens or 64
        args.max_output_tokens = args.max_output_tokens or 8
        args.idle_s = 0.0
        args.timeout_s = min(args.timeout_s, 60.0)
        if args.server == "vllm":
            args.server = "transformers"
    return args


def make_servers(args: argparse.Namespace) -> list[ServerProcess]:
    logs = args.out / "server-logs"
    if args.server == "stub":
        return [stub_server(token_delay_s=0.005, log_path=logs / "stub-0.log")]
    return launch_servers(
        args.server,
        args.model,
        device=args.device,
        mode=args.vllm_mode,
        max_num_seqs=args.max_num_seqs,
        log_dir=logs,
        transformers_cb=(256, 64, 2048)
        if args.device == "cpu"
        else (256, 1024, 8192),  # 1024 x 256 tokens: ~34 GB of KV for 8B
    )


def requests_for(args: argparse.Namespace, scale: float) -> list[Request]:
    trace = load_trace(args.trace)
    reqs = schedule_from_trace(trace, scale, (args.window_start_s, args.window_s * scale))
    cap_in, cap_out = args.max_input_tokens, args.max_output_tokens
    return [
        Request(
            min(r.input_tokens, cap_in) if cap_in else r.input_tokens,
            min(r.output_tokens, cap_out) if cap_out else r.output_tokens,
            r.arrival_s,
        )
        for r in reqs
    ]


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def row_of(run: ServingRun, scale: float, n_requests: int) -> dict[str, Any]:
    s, e, w, lag = run.summary, run.energy, run.windows, run.lag
    return {
        "time_scale": scale,
        "run_id": run.run_id,
        "requests_scheduled": n_requests,
        "requests": s.requests,
        "ok": s.ok,
        "failed": s.failed,
        "failures": dict(s.failures),
        "partial": run.partial,
        "exit_reason": run.exit_reason,
        "ttft_p90_s": _num(s.ttft.p90_s) if s.ttft else None,
        "tpot_p90_s": _num(s.tpot.p90_s) if s.tpot else None,
        "e2e_p90_s": _num(s.e2e.p90_s) if s.e2e else None,
        "send_lag_p99_s": _num(s.send_lag.p99_s) if s.send_lag else None,
        "slo_attainment_pct": _num(s.slo_attainment_pct),
        "goodput_per_s": _num(s.goodput_per_s),
        "output_tokens_per_s": _num(s.output_tokens_per_s),
        "steady_energy_j": _num(e.energy_j) if e else None,
        "steady_j_per_request": _num(e.energy_per_request_j) if e else None,
        "steady_j_per_token": _num(e.energy_per_output_token_j) if e else None,
        "steady_dynamic_j_per_request": _num(e.dynamic_energy_per_request_j) if e else None,
        "client_window_s": (w.client.end_s - w.client.start_s) if w else None,
        "client_j_per_request": _num(w.client.energy_per_request_j) if w else None,
        "client_j_per_token": _num(w.client.energy_per_output_token_j) if w else None,
        "gpu_window_s": (w.gpu.end_s - w.gpu.start_s) if w and w.gpu else None,
        "gpu_j_per_request": _num(w.gpu.energy_per_request_j) if w and w.gpu else None,
        "gpu_j_per_token": _num(w.gpu.energy_per_output_token_j) if w and w.gpu else None,
        "idle_power_w": _num(run.idle_power_w),
        "frontend_lag": lag.flagged if lag else None,
        "frontend_lag_s": lag.lag_s if lag else None,
        "frontend_cpu_peak_pct": _num(lag.cpu_peak_pct) if lag else None,
        "tokens_after_gpu_window": lag.tokens_after_gpu_window if lag else None,
        "frontend_lag_reason": lag.reason if lag else None,
        "notes": list(run.notes),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "online_gpu.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    slo_s = parse_slo(args.slo)
    scales = [float(x) for x in args.scales.split(",")]
    plans = {scale: requests_for(args, scale) for scale in scales}  # bad input fails before the server starts
    gpus: list[Any] = []
    notes: list[str] = []
    if args.device == "cuda":
        from llm_energy.meters import detect_gpus

        gpus, notes = detect_gpus()
        gpus = gpus[:1]  # one replica on GPU 0
    result: dict[str, Any] = {
        "server": args.server,
        "model": args.model,
        "device": args.device,
        "trace": args.trace,
        "window_s": args.window_s,
        "window_start_s": args.window_start_s,
        "slo": args.slo,
        "vllm_mode": args.vllm_mode if args.server == "vllm" else None,
        "max_num_seqs": args.max_num_seqs if args.server == "vllm" else None,
        "notes": notes,
        "rates": [],
    }
    t0 = time.monotonic()
    servers = make_servers(args)
    try:
        with ServerGroup(servers) as started, Store(args.out / "serving.db") as store:
            result["server_startup_s"] = started[0].startup_s
            log.info("server up after %.1f s", started[0].startup_s or math.nan)
            for scale, reqs in plans.items():
                config = {
                    "server": args.server,
                    "model": args.model,
                    "trace": args.trace,
                    "time_scale": scale,
                    "window": f"{args.window_start_s},{args.window_s * scale}",
                    "benchmark": "online_gpu",
                }
                run = replay_servers(
                    started,
                    reqs,
                    gpus=gpus,
                    config=config,
                    slo_s=slo_s,
                    timeout_s=args.timeout_s,
                    idle_s=args.idle_s,
                    max_duration_s=args.window_s + 1.0,
                )
                write_serving_run(store, run)
                row = row_of(run, scale, len(reqs))
                result["rates"].append(row)
                print(
                    f"scale {scale:g}: {row['ok']}/{row['requests']} ok, p90 TTFT {row['ttft_p90_s']}, "
                    f"p90 TPOT {row['tpot_p90_s']}, SLO {row['slo_attainment_pct']}%, "
                    f"J/req client {row['client_j_per_request']} gpu {row['gpu_j_per_request']}, "
                    f"lag {row['frontend_lag']}",
                    flush=True,
                )
                if run.partial:
                    break
    except Exception as exc:  # keep what was measured; the JSON says what failed
        log.exception("online benchmark failed")
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["wall_s"] = time.monotonic() - t0
        (args.out / "online_gpu.json").write_text(json.dumps(result, indent=2, default=str))
        root.removeHandler(handler)
        handler.close()
    print(f"wrote {args.out / 'online_gpu.json'} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    res = main()
    sys.exit(1 if "error" in res else 0)

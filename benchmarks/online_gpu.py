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
        [--offline] [--deadline-s S]

`--offline` (vLLM or stub) then measures the same request sets offline: after the server has stopped,
one offline engine is loaded (vLLM with the server's mode and `--max-num-seqs`, `max_model_len` the
longest request of all rates; the stub's is the simulated engine) and each stored rate's requests (their
input lengths and the output tokens they received) run on it with continuous batching
(`validation.offline.run_validation`). Each rate's row gets `offline` (`validation.online.Comparison.to_dict()`:
online vs offline J/request, J/token and their ratio, batch size `--max-num-seqs`) and `offline_wall_s`;
the offline run is saved as <out>/offline-s<scale>.json and online_gpu.json is rewritten after every
rate. `--deadline-s` starts no offline rate once that many seconds have passed since the script started
(`offline_skipped` lists them); an offline failure is recorded in `offline_error`, the online rows stay.

Budget with the defaults (vLLM, CUDA graphs): ~140 s server start + 3 x (60 s load + drain + 2 s
idle) ≈ 6-7 minutes; at most ~8.5 minutes when every rate drains for the full 60 s request timeout.
`--offline` adds one more vLLM load (~60-145 s) plus the offline run of each rate's requests.
`--smoke` runs the tiny model on CPU against `transformers serve` (or `--server stub`, which meters a
simulated 300 W GPU on the wall clock) with short lengths, for testing this script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_energy.meters.simulated import constant_gpu_on
from llm_energy.records import Request
from llm_energy.serving.loadgen import schedule_from_trace
from llm_energy.serving.persist import write_serving_run
from llm_energy.serving.replay_run import ServingRun, replay_servers
from llm_energy.serving.servers import ServerGroup, ServerProcess, launch_servers
from llm_energy.serving.servers.stub import stub_server
from llm_energy.store import Store
from llm_energy.workloads import load_trace
from llm_energy.workloads.slo import parse_slo

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
    p.add_argument("--offline", action="store_true", help="then run each rate's requests offline (one load)")
    p.add_argument("--deadline-s", type=float, default=None, help="start no offline rate after this")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="TRACE@SCALE:WINDOW_S",
        help="after the scales, replay this trace at this scale for WINDOW_S wall seconds on the same server "
        "(repeatable; e.g. .traces/mooncake_synthetic_trace.csv@0.25:60)",
    )
    p.add_argument("--max-model-len", type=int, default=None, help="vLLM --max-model-len (default: 8704)")
    p.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=None,
        help="vLLM chunked-prefill budget (default: vLLM's)",
    )
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
    if args.offline and args.server not in ("vllm", "stub"):
        p.error(
            f"--offline needs --server vllm or stub (an offline engine with the server's configuration), "
            f"got {args.server}"
            + (" (--smoke runs vllm's part on transformers serve: add --server stub)" if args.smoke else "")
        )
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
        max_model_len=args.max_model_len,
        max_num_batched_tokens=args.max_num_batched_tokens,
        transformers_cb=(256, 64, 2048)
        if args.device == "cpu"
        else (256, 1024, 8192),  # 1024 x 256 tokens: ~34 GB of KV for 8B
    )


def parse_extra(spec: str) -> tuple[str, float, float]:
    """`TRACE@SCALE:WINDOW_S` → (trace, scale, wall window in seconds)."""
    try:
        trace, rest = spec.rsplit("@", 1)
        scale, window = rest.split(":")
        return trace, float(scale), float(window)
    except ValueError:
        raise SystemExit(f"bad --extra {spec!r}: expected TRACE@SCALE:WINDOW_S") from None


def requests_for(args: argparse.Namespace, trace_name: str, scale: float, window_s: float) -> list[Request]:
    """The requests of `trace_name` sent in `window_s` wall seconds at `scale`, lengths clipped as asked."""
    trace = load_trace(trace_name)
    reqs = schedule_from_trace(trace, scale, (args.window_start_s, window_s * scale))
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


def _clean(x: Any) -> Any:
    """NaN and infinities as null, in nested dicts and lists (online_gpu.json stays strict JSON)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return _num(x) if isinstance(x, float) else x


def run_offline(
    args: argparse.Namespace, result: dict[str, Any], save: Callable[[], None], t_start: float
) -> None:
    """Run each stored rate's request set offline on one engine load; its comparison goes into its row."""
    from llm_energy.errors import ConfigError
    from llm_energy.validation.engine import ValidationEngine, engine_point
    from llm_energy.validation.online import (
        compare_online_offline,
        load_request_set,
        offline_from_run,
        request_set_trace,
    )

    engine, mode = ("vllm", args.vllm_mode) if args.server == "vllm" else ("simulated", None)
    batch = args.max_num_seqs  # the server's batch knob (vLLM max_num_seqs): the same configuration
    skipped: list[dict[str, Any]] = result.setdefault("offline_skipped", [])

    def late() -> str | None:
        elapsed = time.monotonic() - t_start
        if args.deadline_s is not None and elapsed > args.deadline_s:
            return f"deadline: {elapsed:.0f} s since start > --deadline-s {args.deadline_s:g}"
        return None

    try:
        sets = []
        with Store(args.out / "serving.db") as store:
            for row in result["rates"]:
                try:
                    sets.append((row, load_request_set(store, row["run_id"])))
                except ConfigError as exc:
                    skipped.append({"time_scale": row["time_scale"], "reason": str(exc)})
        reason = late()
        if reason:  # not even the engine is loaded
            skipped.extend({"time_scale": row["time_scale"], "reason": reason} for row, _ in sets)
        if not sets or reason:
            return
        traces = [request_set_trace(rs) for _, rs in sets]
        point = engine_point(
            model=args.model,
            engine=engine,
            mode=mode,
            device=args.device,
            seed=0,
            options={},
            batch_size=batch,
            input_len=max(int(tr.input_tokens.max()) for tr in traces),
            output_len=max(int(tr.output_tokens.max()) for tr in traces),
            max_model_len=max(int((tr.input_tokens + tr.output_tokens).max()) for tr in traces),
        )
        with ValidationEngine(point, idle_s=args.idle_s, on_status=print) as opened:
            result["offline_load_s"] = opened.worker.load_s
            for (row, rs), tr in zip(sets, traces, strict=True):
                if reason := late():
                    skipped.append({"time_scale": row["time_scale"], "reason": reason})
                    continue
                t1 = time.monotonic()
                run = opened.run(tr, batch, batching="continuous")
                path = run.save(args.out / f"offline-s{row['time_scale']:g}.json")
                cmp = compare_online_offline(rs, offline_from_run(run, rs, source=path.name), batch)
                row["offline"], row["offline_wall_s"] = _clean(cmp.to_dict()), time.monotonic() - t1
                save()
                print(
                    f"scale {row['time_scale']:g} offline: {cmp.offline.requests} requests, "
                    f"{cmp.offline.mean_j:.2f} J/req offline vs {cmp.online.mean_j:.2f} online "
                    f"(ratio {cmp.ratio:.2f}) in {row['offline_wall_s']:.0f} s",
                    flush=True,
                )
    except Exception as exc:  # the online rows stay; the JSON says what failed offline
        log.exception("offline measurement failed")
        result["offline_error"] = f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    t_start = time.monotonic()
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "online_gpu.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    slo_s = parse_slo(args.slo)
    scales = [float(x) for x in args.scales.split(",")]
    # (trace, scale, wall window) per run, all on one server; bad input fails before the server starts
    runs = [(args.trace, scale, args.window_s) for scale in scales] + [parse_extra(e) for e in args.extra]
    plans = [(t, scale, w, requests_for(args, t, scale, w)) for t, scale, w in runs]
    gpus: list[Any] = []
    notes: list[str] = []
    if args.device == "cuda":
        from llm_energy.meters import detect_gpus

        gpus, notes = detect_gpus()
        gpus = gpus[:1]  # one replica on GPU 0
    elif args.server == "stub":
        gpus, notes = (
            [constant_gpu_on(time.perf_counter)[0]],
            ["stub on CPU: a simulated 300 W GPU is metered"],
        )
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
        "max_num_batched_tokens": args.max_num_batched_tokens,
        "extra": args.extra,
        "notes": notes,
        "rates": [],
    }
    t0 = time.monotonic()

    def save() -> None:
        result["wall_s"] = time.monotonic() - t0
        (args.out / "online_gpu.json").write_text(json.dumps(result, indent=2, default=str))

    servers = make_servers(args)
    try:
        try:
            with ServerGroup(servers) as started, Store(args.out / "serving.db") as store:
                result["server_startup_s"] = started[0].startup_s
                log.info("server up after %.1f s", started[0].startup_s or math.nan)
                for trace_name, scale, window_s, reqs in plans:
                    config = {
                        "server": args.server,
                        "model": args.model,
                        "trace": trace_name,
                        "time_scale": scale,
                        "window": f"{args.window_start_s},{window_s * scale}",
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
                        max_duration_s=window_s + 1.0,
                    )
                    write_serving_run(store, run)
                    row = {"trace": trace_name, "window_s": window_s} | row_of(run, scale, len(reqs))
                    result["rates"].append(row)
                    print(
                        f"{trace_name} scale {scale:g}: {row['ok']}/{row['requests']} ok, p90 TTFT {row['ttft_p90_s']}, "
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
        if args.offline and result["rates"]:  # the server has stopped: its GPU memory is free
            save()  # the online rows are on disk before the offline engine loads
            run_offline(args, result, save, t_start)
    finally:
        save()
        root.removeHandler(handler)
        handler.close()
    print(f"wrote {args.out / 'online_gpu.json'} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    res = main()
    sys.exit(1 if "error" in res else 0)

"""Commands that serve: replay a trace's arrivals against a running OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import numpy as np
import typer
from rich.table import Table

from llm_energy.cli import JsonOption, _guard, app, console
from llm_energy.errors import ConfigError
from llm_energy.meters.base import EnergyMeter

if TYPE_CHECKING:
    from llm_energy.serving import ServerKind


class WindowRecorder:
    """Consecutive meter windows of `period_s` on a background thread: (start_s, end_s, joules)."""

    def __init__(self, meter: EnergyMeter, period_s: float = 0.5) -> None:
        self.meter = meter
        self.period_s = period_s
        self.windows: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-energy-serving-windows", daemon=True)

    def _run(self) -> None:
        i = 0
        while True:
            name = f"serve-{i}"
            t0 = self.meter.clock()
            self.meter.begin_window(name)
            stopped = self._stop.wait(self.period_s)
            m = self.meter.end_window(name)
            self.windows.append((t0, t0 + m.duration_s, m.gpu_energy_j))
            i += 1
            if stopped:
                return

    def __enter__(self) -> WindowRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self.period_s + 5)


def _window_energy_j(windows: list[tuple[float, float, float]], start_s: float, end_s: float) -> float:
    """Energy in [start_s, end_s], prorating windows that straddle its edges."""
    total = 0.0
    for w0, w1, e in windows:
        overlap = min(w1, end_s) - max(w0, start_s)
        if overlap > 0 and w1 > w0:
            total += e * overlap / (w1 - w0)
    return total


@app.command()
def replay(
    url: Annotated[str, typer.Option(help="running OpenAI-compatible server, e.g. http://127.0.0.1:8000")],
    trace: Annotated[
        str, typer.Option(help="bundled trace or trace file (lengths and arrival times)")
    ] = "azure-conv",
    time_scale: Annotated[
        float, typer.Option(help="replay the trace's arrivals this many times faster")
    ] = 1.0,
    window: Annotated[str | None, typer.Option(help="START,DURATION in trace seconds, e.g. 600,300")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Poisson/gamma arrivals at this rate instead (req/s)")
    ] = None,
    burstiness: Annotated[float, typer.Option(help="gamma shape for --rate (1 = Poisson)")] = 1.0,
    closed: Annotated[int | None, typer.Option(help="closed loop with N concurrent users instead")] = None,
    num_requests: Annotated[int | None, typer.Option(help="send at most this many requests")] = None,
    max_duration_s: Annotated[float | None, typer.Option(help="send nothing after this many seconds")] = None,
    timeout_s: Annotated[float, typer.Option(help="bound on each request, seconds")] = 60.0,
    server_kind: Annotated[
        str, typer.Option(help="vllm | transformers | openai (how lengths are forced)")
    ] = "vllm",
    model: Annotated[str | None, typer.Option(help="model name to send, if the server needs one")] = None,
    slo: Annotated[str | None, typer.Option(help="e.g. ttft=2s,tpot=100ms,e2e=30s")] = None,
    seed: Annotated[int, typer.Option(help="seed for arrivals and prompt token ids")] = 0,
    idle_s: Annotated[float, typer.Option(help="idle power measured first, seconds (0 to skip)")] = 2.0,
    records_out: Annotated[
        Path | None, typer.Option("--records", help="write per-request records (CSV)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay arrivals against a server: latency, SLO attainment, and GPU energy of the steady state.

    The meters measure this machine's GPUs while the server runs (start the server on them). Energy is
    read in consecutive 0.5 s windows; the steady-state window excludes warm-up and drain (first and last
    10% of requests), and each request gets its own joules by the tokens it processed in each window.
    """
    from llm_energy.meters import detect_gpus
    from llm_energy.serving import (
        attribute_energy,
        parse_slo,
        run_load,
        schedule_at_rate,
        schedule_from_trace,
        serving_energy,
        steady_state_window,
        summarise,
    )
    from llm_energy.workloads import load_trace

    def run() -> dict[str, Any]:
        slo_s = parse_slo(slo) if slo else {}
        if server_kind not in ("vllm", "transformers", "openai"):
            raise ConfigError(f"unknown server kind {server_kind!r}; valid: vllm, transformers, openai")
        tr = load_trace(trace)
        if num_requests is not None:
            tr = tr.head(num_requests)
        if rate is not None or closed is not None:
            reqs = schedule_at_rate(tr, rate or 1.0, np.random.default_rng(seed), burstiness)
        else:
            span = None
            if window is not None:
                try:
                    start, dur = (float(x) for x in window.split(","))
                except ValueError as exc:
                    raise ConfigError(f"--window must be START,DURATION in seconds, got {window!r}") from exc
                span = (start, dur)
            reqs = schedule_from_trace(tr, time_scale, span)
        gpus, notes = detect_gpus()
        meter = EnergyMeter(gpus, clock=time.perf_counter) if gpus else None
        try:
            if meter is not None and idle_s > 0:
                meter.measure_idle(idle_s)
            load = run_load(
                url,
                reqs,
                mode="closed" if closed else "open",
                concurrency=closed,
                clock=time.perf_counter,
                timeout_s=timeout_s,
                max_duration_s=max_duration_s,
                server_kind=cast("ServerKind", server_kind),
                model=model,
                seed=seed,
            )
            if meter is None:
                records, windows = asyncio.run(load), []
            else:
                with WindowRecorder(meter) as recorder:
                    records = asyncio.run(load)
                windows = recorder.windows
        finally:
            if meter is not None:
                meter.close()
        steady = steady_state_window(records)
        out: dict[str, Any] = {
            "summary": summarise(records, slo_s, steady),
            "notes": notes,
            "records": records,
        }
        if windows:
            idle_w = sum(meter.idle_power_w.get(f"gpu:{g.index}", 0.0) for g in gpus) if meter else None
            out["energy"] = serving_energy(
                records, steady, _window_energy_j(windows, *steady), idle_w or None
            )
            out["attribution"] = attribute_energy(records, windows)
        return out

    result = _guard(run)
    summary, energy = result["summary"], result.get("energy")
    if records_out is not None:
        _write_records(records_out, result)
    if as_json:
        payload = {"summary": _plain(summary), "energy": _plain(energy), "notes": result["notes"]}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    table = Table(title=f"replay of {trace} against {url}", show_header=False)
    table.add_row(
        "requests",
        f"{summary.requests} sent, {summary.ok} ok, {summary.failed} failed {dict(summary.failures)}",
    )
    for name in ("ttft", "tpot", "e2e"):
        lat = getattr(summary, name)
        if lat is not None:
            table.add_row(
                name,
                f"p50 {lat.p50_s * 1e3:,.1f} ms · p90 {lat.p90_s * 1e3:,.1f} ms · "
                f"p99 {lat.p99_s * 1e3:,.1f} ms",
            )
    table.add_row(
        "throughput",
        f"{summary.request_throughput_per_s:.2f} req/s, {summary.output_tokens_per_s:,.0f} tok/s",
    )
    if summary.slo_attainment_pct is not None:
        table.add_row(
            "SLO", f"{summary.slo_attainment_pct:.1f}% attained, goodput {summary.goodput_per_s:.2f} req/s"
        )
    if energy is not None:
        table.add_row(
            "GPU energy (steady state)",
            f"{energy.energy_j:,.0f} J over {energy.duration_s:.1f} s "
            f"(warm-up {energy.warmup_excluded_s:.1f} s and drain {energy.drain_excluded_s:.1f} s excluded)",
        )
        table.add_row(
            "per request / token",
            f"{energy.energy_per_request_j:.2f} J / {energy.energy_per_output_token_j:.4f} J",
        )
    else:
        table.add_row("energy", "no GPU visible here: latency only")
    console.print(table)


def _plain(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def _write_records(path: Path, result: dict[str, Any]) -> None:
    import pandas as pd

    per_request = result["attribution"].per_request_j if "attribution" in result else {}
    rows = []
    for r in result["records"]:
        row = _plain(r)
        row["token_times_s"] = ";".join(f"{t:.6f}" for t in r.token_times_s)
        row["energy_j"] = per_request.get(r.index)
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)

"""Commands that serve: replay a trace's arrivals against OpenAI-compatible servers (running or launched)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from llm_energy.cli.app import JsonOption, _guard, app, console, err_console, esc
from llm_energy.errors import ConfigError


@app.command()
def replay(
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="running OpenAI-compatible server(s), e.g. http://127.0.0.1:8000; repeat for replicas"
        ),
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="launch this server instead of --url: transformers | vllm")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="--server: bundled architecture, e.g. llama-3.1-8b; --url: model name")
    ] = None,
    device: Annotated[str, typer.Option(help="--server: cuda (replica i on GPU i) or cpu")] = "cuda",
    replicas: Annotated[int, typer.Option(help="--server: number of server replicas, one per GPU")] = 1,
    policy: Annotated[str, typer.Option(help="balancing over replicas: round-robin | least-outstanding")] = (
        "round-robin"
    ),
    vllm_mode: Annotated[str, typer.Option(help="--server vllm: cudagraphs | eager")] = "cudagraphs",
    max_num_seqs: Annotated[int, typer.Option(help="--server vllm: --max-num-seqs")] = 256,
    startup_timeout_s: Annotated[
        float | None, typer.Option(help="--server: longest wait for a healthy server, seconds")
    ] = None,
    log_dir: Annotated[Path | None, typer.Option(help="--server: write server logs here")] = None,
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
        str, typer.Option(help="--url: vllm | transformers | openai (how lengths are forced)")
    ] = "vllm",
    slo: Annotated[str | None, typer.Option(help="e.g. ttft=2s,tpot=100ms,e2e=30s")] = None,
    seed: Annotated[int, typer.Option(help="seed for arrivals and prompt token ids")] = 0,
    idle_s: Annotated[float, typer.Option(help="idle power measured first, seconds (0 to skip)")] = 2.0,
    warmup_requests: Annotated[int, typer.Option(help="unmeasured requests per server first")] = 2,
    records_out: Annotated[
        Path | None, typer.Option("--records", help="write per-request records (CSV)")
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="store the run in this SQLite results store")
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(help="--server vllm: --max-model-len (default: the replay's longest request)"),
    ] = None,
    vllm_usage_stats: Annotated[
        bool,
        typer.Option(help="--server vllm: let vLLM report usage statistics (off: VLLM_NO_USAGE_STATS=1)"),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Replay arrivals against a server: latency, SLO attainment, and GPU energy of the steady state.

    Either `--url` (servers someone runs; the meters measure this machine's GPUs) or `--server`
    (llm-energy starts transformers serve or vLLM on 127.0.0.1, one replica per GPU, and always stops
    them). Energy is read in consecutive 0.5 s windows; the steady-state window excludes warm-up and
    drain (first and last 10% of requests); each request gets its own joules by the tokens it processed
    in each window. The client-token window and the GPU-work window are both reported, with a
    frontend-lag flag when the server's CPU, not its GPU, paced the tokens. Every output (--db,
    --records, --log-dir) is checked before anything starts; records and JSON are written even when
    storing the run fails. Progress goes to stderr (not with --json).
    """
    from llm_energy.workloads.slo import parse_slo

    def prepare() -> tuple[dict[str, float], list[Any], Any]:
        slo_s = parse_slo(slo) if slo else {}
        reqs = _schedule(trace, num_requests, rate, closed, burstiness, seed, window, time_scale)
        return slo_s, reqs, _open_outputs(db, records_out, log_dir)

    slo_s, reqs, store = _guard(prepare)
    try:

        def run() -> tuple[Any, list[str]]:
            from llm_energy.serving.replay_run import replay_servers

            servers_cm, notes = _servers(
                url, server, model, device, replicas, policy, server_kind, vllm_mode, max_num_seqs,
                startup_timeout_s, log_dir, reqs, max_model_len, vllm_usage_stats,
            )  # fmt: skip
            gpus, gpu_notes = _gpus()
            with servers_cm as servers, _progress(len(reqs), enabled=not as_json) as on_progress:
                result = replay_servers(
                    servers,
                    reqs,
                    gpus=gpus,
                    config=_run_config(url, server, model, device, trace, time_scale, window, rate, closed)
                    | {"vllm_mode": vllm_mode if _takes(server, "mode") else None},
                    mode="closed" if closed else "open",
                    concurrency=closed,
                    slo_s=slo_s,
                    policy=policy,
                    timeout_s=timeout_s,
                    max_duration_s=max_duration_s,
                    seed=seed,
                    idle_s=idle_s,
                    warmup_requests=warmup_requests,
                    model=model if server is None else None,
                    on_progress=on_progress,
                )
            return result, [*gpu_notes, *notes]

        result, notes = _guard(run)
        if records_out is not None:
            _guard(lambda: _write_records(records_out, result))
        if as_json:
            sys.stdout.write(json.dumps(_payload(result, notes), indent=2, default=str) + "\n")
        else:
            _render(result, notes, url or [server or ""])
        if store is not None:
            from llm_energy.serving.persist import write_serving_run

            _guard(lambda: write_serving_run(store, result))
    finally:
        if store is not None:
            store.close()


def _run_config(
    url: list[str] | None,
    server: str | None,
    model: str | None,
    device: str,
    trace: str,
    time_scale: float,
    window: str | None,
    rate: float | None,
    closed: int | None,
) -> dict[str, Any]:
    """What was run, as stored with the run (JSON types)."""
    return {
        "server": server or "external",
        "model": model,
        "device": device if server else None,
        "trace": trace,
        "time_scale": None if rate is not None or closed is not None else time_scale,
        "window": window,
        "rate_per_s": rate,
        "closed_users": closed,
        "urls": list(url or []),
    }


def _open_outputs(db: Path | None, records_out: Path | None, log_dir: Path | None) -> Any:
    """Check every output before anything starts; return the opened store (None without --db).

    Raises:
        ConfigError: --records is a folder, its folder is missing or not writable; --log-dir cannot
            be made a folder; --db is not ours (`NotAStore`).
        StoreError: --db cannot be written (read-only, locked).
    """
    if records_out is not None:
        folder = records_out.parent
        if records_out.is_dir():
            raise ConfigError(f"--records {records_out}: it is a directory")
        if not folder.is_dir():
            raise ConfigError(f"--records {records_out}: no such directory {folder}")
        if not os.access(folder, os.W_OK) or (records_out.exists() and not os.access(records_out, os.W_OK)):
            raise ConfigError(f"--records {records_out}: not writable")
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--log-dir {log_dir}: {exc.strerror or exc}") from exc
    if db is None:
        return None
    from llm_energy.store import Store
    from llm_energy.store.serving import prepare_serving_store

    store = Store(db)
    try:
        prepare_serving_store(store)
    except BaseException:
        store.close()
        raise
    return store


@contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress line on stderr (elapsed, requests sent and done, ETA); None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.fields[sent]}/{task.total:.0f} sent, {task.completed:.0f} done"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("replay", total=total, sent=0)

        def update(sent: int, done: int) -> None:
            progress.update(task, completed=done, sent=sent)

        yield update


def _servers(
    url: list[str] | None,
    server: str | None,
    model: str | None,
    device: str,
    replicas: int,
    policy: str,
    server_kind: str,
    vllm_mode: str,
    max_num_seqs: int,
    startup_timeout_s: float | None,
    log_dir: Path | None,
    reqs: Sequence[Any],
    max_model_len: int | None,
    usage_stats: bool = False,
) -> tuple[Any, list[str]]:
    """Check the server options; return a context manager giving the started servers, and notes.

    vLLM is sized for the replay (`max_model_len_for`): a request it could not take is refused here,
    naming the request and the limit, before any server starts.
    """
    from contextlib import nullcontext

    from llm_energy.serving.balancer import POLICIES
    from llm_energy.serving.request import check_reachable
    from llm_energy.serving.servers import (
        SERVERS,
        ExternalServer,
        LaunchSettings,
        ServerGroup,
        launch_servers,
    )

    if policy not in POLICIES:
        raise ConfigError(f"unknown --policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if bool(url) == (server is not None):
        raise ConfigError(
            f"give either --url (a running server) or --server {'|'.join(SERVERS.launchable())}"
        )
    if max_model_len is not None and not _takes(server, "max_model_len"):
        takers = [name for name in SERVERS.launchable() if _takes(name, "max_model_len")]
        raise ConfigError(f"--max-model-len applies to --server {' or '.join(takers)} only")
    if server is not None:
        if model is None:
            raise ConfigError("--server needs --model (a bundled architecture, e.g. llama-3.1-8b)")
        notes: list[str] = []
        if server in SERVERS:  # sized for the replay (vLLM: --max-model-len holds its longest request)
            from llm_energy.architectures import load_architecture

            sized, notes = SERVERS[server].sized_for(
                LaunchSettings(max_model_len=max_model_len), reqs, load_architecture(model)
            )
            max_model_len = sized.max_model_len
        launched = launch_servers(
            server,
            model,
            replicas=replicas,
            device=device,
            mode=vllm_mode,
            max_num_seqs=max_num_seqs,
            startup_timeout_s=startup_timeout_s,
            log_dir=log_dir,
            max_model_len=max_model_len,
            usage_stats=usage_stats,
        )
        return ServerGroup(launched), notes
    if server_kind not in SERVERS:
        raise ConfigError(f"unknown server kind {server_kind!r}; valid: {', '.join(SERVERS)}")
    for u in url or []:
        asyncio.run(check_reachable(u))
    return nullcontext([ExternalServer(u, server_kind) for u in url or []]), []


def _takes(server: str | None, setting: str) -> bool:
    """Whether launchable server `server` reads `LaunchSettings` field `setting`."""
    from llm_energy.serving.servers import SERVERS

    return server is not None and server in SERVERS and setting in SERVERS[server].settings


def _schedule(
    trace: str,
    num_requests: int | None,
    rate: float | None,
    closed: int | None,
    burstiness: float,
    seed: int,
    window: str | None,
    time_scale: float,
) -> list[Any]:
    from llm_energy.serving.loadgen import schedule_at_rate, schedule_from_trace
    from llm_energy.workloads import load_trace

    tr = load_trace(trace)
    if num_requests is not None:
        tr = tr.head(num_requests)
    if rate is not None or closed is not None:
        return schedule_at_rate(tr, rate or 1.0, np.random.default_rng(seed), burstiness)
    span = None
    if window is not None:
        try:
            start, dur = (float(x) for x in window.split(","))
        except ValueError as exc:
            raise ConfigError(f"--window must be START,DURATION in seconds, got {window!r}") from exc
        span = (start, dur)
    return schedule_from_trace(tr, time_scale, span)


def _gpus() -> tuple[list[Any], list[str]]:
    from llm_energy.meters import detect_gpus

    return detect_gpus()


def _payload(result: Any, notes: list[str]) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "partial": result.partial,
        "exit_reason": result.exit_reason,
        "summary": _plain(result.summary),
        "energy": _plain(result.energy),
        "per_gpu_energy_j": dict(result.per_gpu_energy_j),
        "windows": _plain(result.windows),
        "frontend_lag": _plain(result.lag),
        "replica_requests": list(result.replica_requests),
        "notes": [*notes, *result.notes],
    }


def _render(result: Any, notes: list[str], targets: list[str]) -> None:
    summary, energy = result.summary, result.energy
    table = Table(title=esc(f"replay against {', '.join(targets)}"), show_header=False)
    if result.partial:
        table.add_row("[bold red]PARTIAL RUN[/]", esc(result.exit_reason))
    table.add_row(
        "requests",
        esc(f"{summary.requests} sent, {summary.ok} ok, {summary.failed} failed {dict(summary.failures)}"),
    )
    if len(result.replica_requests) > 1:
        table.add_row("per replica", " / ".join(str(n) for n in result.replica_requests))
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
        for w in (result.windows.client, result.windows.gpu) if result.windows else ():
            if w is not None:
                table.add_row(
                    f"{w.name} window",
                    f"{w.end_s - w.start_s:.1f} s: {w.energy_per_request_j:.2f} J/request, "
                    f"{w.energy_per_output_token_j:.4f} J/token",
                )
    else:
        table.add_row("energy", "no GPU visible here: latency only")
    if result.lag is not None:
        table.add_row("frontend lag", esc(result.lag.reason))
    for note in [*notes, *result.notes]:
        table.add_row("note", esc(note))
    console.print(table)


def _plain(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def _write_records(path: Path, result: Any) -> None:
    import pandas as pd

    per_request = result.attribution.per_request_j if result.attribution is not None else {}
    rows = []
    for r in result.records:
        row = _plain(r)
        row["token_times_s"] = ";".join(f"{t:.6f}" for t in r.token_times_s)
        row["energy_j"] = per_request.get(r.index)
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)

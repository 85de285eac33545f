"""The `llm-energy` command line: parse, call one library function, render with rich.

Exit codes: 0 ok, 1 the run failed (e.g. out of memory), 2 bad input. `--json` writes only JSON
to stdout. Importing this module must not import torch: heavy work happens inside the commands.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from llm_energy.errors import ConfigError, LlmEnergyError
from llm_energy.records import PHASES, RunResult

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Measure, model and cut the energy of LLM inference."
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _fail(exc: LlmEnergyError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def _guard(fn: Callable[[], T]) -> T:
    """Run `fn`, turning our errors into one clear message and the right exit code."""
    try:
        return fn()
    except LlmEnergyError as exc:
        raise _fail(exc) from None


DbOption = Annotated[
    Path | None, typer.Option("--db", help="SQLite results database (default: user data dir)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="write only JSON to stdout")]


def _open_store(db: Path | None) -> Any:
    from llm_energy.store import Store, default_db_path

    return Store(db or default_db_path())


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def measure(
    model: Annotated[
        str, typer.Option(help="bundled architecture (see `models`) or local checkpoint dir")
    ] = "tiny",
    engine: Annotated[str, typer.Option(help="engine: hf | simulated")] = "hf",
    mode: Annotated[str | None, typer.Option(help="hf: eager | compiled | cudagraphs")] = None,
    batch_size: Annotated[int, typer.Option(help="requests per batch")] = 1,
    input_len: Annotated[int, typer.Option(help="input tokens per request")] = 512,
    output_len: Annotated[int, typer.Option(help="output tokens per request (forced)")] = 128,
    repeats: Annotated[int, typer.Option(help="independent measurements, each stored")] = 1,
    device: Annotated[str, typer.Option(help="auto | cuda | cuda:N | cpu")] = "auto",
    dtype: Annotated[str, typer.Option(help="bfloat16 | float16 | float32 (CPU uses float32)")] = "bfloat16",
    init: Annotated[
        str | None, typer.Option(help="random weights: normal | uniform | zeros (default: the engine's)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for weights and inputs")] = 0,
    window_s: Annotated[float, typer.Option(help="repeat each phase until its window lasts this long")] = 2.0,
    idle_s: Annotated[float, typer.Option(help="seconds of idle power measured before loading")] = 2.0,
    no_total: Annotated[bool, typer.Option("--no-total", help="skip the whole-generation window")] = False,
    cpu_tdp_w: Annotated[float | None, typer.Option(help="CPU TDP for the estimate where no RAPL")] = None,
    decoding: Annotated[str | None, typer.Option(help="hf: greedy | sample | top-p | top-k | beam")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus probability (top-p)")] = None,
    top_k: Annotated[int | None, typer.Option(help="top-k")] = None,
    num_beams: Annotated[int | None, typer.Option(help="beams (beam search)")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure one configuration: prefill, decode and total energy with uncertainty; store it."""
    from llm_energy.api import run_measure

    if repeats < 1:
        raise _fail(ConfigError(f"--repeats must be >= 1 (got {repeats})"))
    fields: dict[str, object] = {
        "model": model,
        "engine": engine,
        "mode": mode,
        "batch_size": batch_size,
        "input_len": input_len,
        "output_len": output_len,
        "dtype": dtype,
        "init": init,
        "seed": seed,
        "device": device,
        "options": {
            k: v
            for k, v in (
                ("decoding", decoding),
                ("temperature", temperature),
                ("top_p", top_p),
                ("top_k", top_k),
                ("num_beams", num_beams),
            )
            if v is not None
        },
    }

    def run() -> tuple[list[RunResult], Path]:
        from llm_energy.sweep.spec import make_point

        make_point(**({**fields, "device": "cpu"}))  # validate everything before touching hardware
        with _open_store(db) as store:  # a locked or foreign database fails now, before GPU time
            status = err_console.status("starting") if not as_json else None
            say = status.update if status else None
            try:
                if status:
                    status.start()
                results = run_measure(
                    fields,
                    repeats=repeats,
                    target_window_s=window_s,
                    idle_s=idle_s,
                    measure_total=not no_total,
                    cpu_tdp_w=cpu_tdp_w,
                    on_status=say,
                )
            finally:
                if status:
                    status.stop()
            for result in results:
                store.write_run(result)
        return results, store.path

    results, db_path = _guard(run)
    if as_json:
        sys.stdout.write(json.dumps([run_to_json(r) for r in results], indent=2, default=str) + "\n")
    else:
        render_runs(results, db_path)
    if any(r.status != "ok" for r in results):
        raise typer.Exit(1)


def _primary_prefix(result: RunResult) -> str:
    """GPU energy where GPUs were measured, else the CPU/DRAM domains."""
    for phase in result.phases.values():
        if phase.measurement.domains("gpu:"):
            return "gpu:"
    return ""


def phase_summary(result: RunResult, phase: str) -> dict[str, Any]:
    """Return per-repetition figures of one phase for display and JSON."""
    p = result.phases[phase]  # type: ignore[index]
    m = p.measurement
    prefix = _primary_prefix(result)
    energy_j = m.energy_sum_j(prefix) / p.repetitions
    sources = sorted({m.source[d] for d in m.domains(prefix)})
    return {
        "duration_s": p.duration_s,
        "energy_j": energy_j,
        "uncertainty_j": m.uncertainty_sum_j(prefix) / p.repetitions,
        "tokens": p.tokens,
        "energy_per_token_j": energy_j / p.tokens if p.tokens else None,
        "mean_power_w": m.mean_power_w(prefix),
        "tokens_per_s": p.tokens_per_s if p.tokens else None,
        "repetitions": p.repetitions,
        "window_s": m.duration_s,
        "domains": m.domains(prefix),
        "source": ",".join(sources),
        "cpu_energy_j": m.energy_sum_j("cpu:") / p.repetitions if prefix == "gpu:" else None,
        "flags": list(m.flags),
    }


def run_to_json(result: RunResult) -> dict[str, Any]:
    """Return a JSON-ready summary of a run."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "error": result.error,
        "config": dict(result.config),
        "compile_s": result.compile_s,
        "load_s": result.load_s,
        "gpu": result.env.get("gpu_name"),
        "phases": {ph: phase_summary(result, ph) for ph in PHASES if ph in result.phases},
    }


def _mean_spread(values: Sequence[float]) -> tuple[float, float]:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return float("nan"), 0.0
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def render_runs(results: Sequence[RunResult], db_path: Path) -> None:
    """Print a rich table of the (repeated) measurement, mean over repeats."""
    ok = [r for r in results if r.status == "ok"]
    for bad in (r for r in results if r.status != "ok"):
        err_console.print(f"[bold red]{bad.status}:[/] {bad.error}")
    if not ok:
        return
    first = ok[0]
    cfg = first.config
    device = cfg.get("engine_facts", {}).get("device", cfg["device"])
    title = (
        f"{cfg['model']} · {cfg['engine']} {cfg.get('mode')} · batch {cfg['batch_size']} · "
        f"in {cfg['input_len']} / out {cfg['output_len']} · {device} · {len(ok)} run(s)"
    )
    table = Table(title=title)
    for col in (
        "phase",
        "time/rep",
        "energy/rep (J)",
        "J/token",
        "avg power (W)",
        "tokens/s",
        "reps",
        "source",
    ):
        table.add_column(col, justify="right" if col not in ("phase", "source") else "left")
    estimated = False
    for phase in PHASES:
        if phase not in first.phases:
            continue
        rows = [phase_summary(r, phase) for r in ok]
        e_mean, e_std = _mean_spread([row["energy_j"] for row in rows])
        unc = max(statistics.fmean(row["uncertainty_j"] for row in rows), e_std)
        d_mean, _ = _mean_spread([row["duration_s"] for row in rows])
        jpt = _mean_spread([row["energy_per_token_j"] for row in rows])[0] if rows[0]["tokens"] else None
        tps = _mean_spread([row["tokens_per_s"] for row in rows])[0] if rows[0]["tokens"] else None
        source = rows[0]["source"]
        estimated = estimated or "estimated" in source
        table.add_row(
            phase,
            f"{d_mean * 1e3:,.1f} ms",
            f"{e_mean:,.2f} ± {unc:,.2f}",
            "-" if jpt is None else f"{jpt:.4g}",
            f"{_mean_spread([row['mean_power_w'] for row in rows])[0]:,.0f}",
            "-" if tps is None else f"{tps:,.0f}",
            str(rows[0]["repetitions"]),
            source or "-",
        )
    console.print(table)
    console.print(
        f"compile/warm-up {first.compile_s:.1f} s (excluded) · load {first.load_s:.1f} s · "
        f"stored in {db_path} as {', '.join(r.run_id[:8] for r in ok)}"
    )
    if estimated:
        console.print(
            "[bold yellow]Energy is ESTIMATED[/] (CPU TDP x utilisation: no GPU and no readable RAPL "
            "counter here); it is labelled `estimated` in the store. Run on a GPU for measured energy."
        )
    flags = sorted({f for r in ok for p in r.phases.values() for f in p.measurement.flags})
    if flags:
        console.print(f"flags: {', '.join(flags)}")


@app.command()
def sweep(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="sweep spec (YAML)")],
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the points and a GPU-time estimate")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="measure stored oom/error points again")
    ] = False,
    executor: Annotated[str, typer.Option(help="local | ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (ray executor)")] = None,
) -> None:
    """Measure every point of a sweep spec; rerunning resumes where it stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from llm_energy.sweep.runner import RunOptions
    from llm_energy.sweep.spec import load_spec
    from llm_energy.sweep.sweep import estimate_gpu_s, run_sweep

    spec = _guard(lambda: load_spec(spec_path))
    points = _guard(spec.points)
    if dry_run:
        table = Table(title=f"sweep {spec.name}: {len(points)} points × {spec.repeats} repeats")
        for col in ("model", "engine", "mode", "batch", "input", "output", "point_id"):
            table.add_column(col)
        for p in points:
            table.add_row(
                p.model,
                p.engine,
                str(p.mode),
                str(p.batch_size),
                str(p.input_len),
                str(p.output_len),
                p.point_id(),
            )
        console.print(table)
        est = estimate_gpu_s(
            points, RunOptions(target_window_s=spec.window_s, repeats=spec.repeats), spec.idle_s
        )
        console.print(
            f"estimated GPU time ≤ {est / 60:.0f} min (rough: load, compile per point, 3 windows per "
            "repeat; points already stored are skipped when run)"
        )
        return

    def run() -> Any:
        with (
            _open_store(db) as store,
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"),
                console=err_console,
            ) as progress,
        ):
            task = progress.add_task(spec.name, total=len(points), last="")

            def on_point(s: Any) -> None:
                last = ""
                if s.last is not None and s.last.status == "ok" and "total" in s.last.phases:
                    last = f"last {s.last.phases['total'].energy_per_token_j:.4g} J/token"
                elif s.last is not None:
                    last = f"last: {s.last.status}"
                progress.update(task, completed=s.skipped + s.measured + s.infeasible, last=last)

            return run_sweep(
                spec, store, executor=executor, retry_failed=retry_failed, address=address, on_point=on_point
            ), store.path

    summary, path = _guard(run)
    console.print(
        f"{summary.total} points: {summary.measured} measured ({summary.ok} ok runs, {summary.oom} oom, "
        f"{summary.error} error), {summary.skipped} already stored, {summary.infeasible} infeasible "
        f"(not tried) → {path}"
    )
    for line in summary.failures[:20]:
        err_console.print(f"[yellow]{line}[/]")
    if summary.error:
        raise typer.Exit(1)


@app.command()
def estimate(
    trace: Annotated[
        str, typer.Option(help="bundled trace (azure-conv, azure-code) or a trace file")
    ] = "azure-conv",
    profile: Annotated[
        str | None, typer.Option(help="profile file or bundled name (default: H100 vLLM)")
    ] = None,
    method: Annotated[str, typer.Option(help="binned | p1 | parametric")] = "binned",
    batch_size: Annotated[
        int | None, typer.Option(help="run requests at this batch (default: largest feasible)")
    ] = None,
    carbon_intensity: Annotated[float | None, typer.Option(help="grid intensity, gCO2/kWh")] = None,
    price: Annotated[float | None, typer.Option(help="electricity price per kWh")] = None,
    input_col: Annotated[str | None, typer.Option(help="input-length column of a generic trace")] = None,
    output_col: Annotated[str | None, typer.Option(help="output-length column of a generic trace")] = None,
    time_col: Annotated[str | None, typer.Option(help="arrival-time column of a generic trace")] = None,
    bins: Annotated[int, typer.Option(help="bins to show in the table")] = 12,
    as_json: JsonOption = False,
) -> None:
    """Estimate a real trace's GPU energy from a fitted profile (no GPU needed), beside the FLOPs estimate."""
    from llm_energy.estimate import estimate_trace
    from llm_energy.modeling.profile import load_profile
    from llm_energy.workloads import load_trace

    def run() -> Any:
        prof = load_profile(profile)
        tr = load_trace(trace, input_col=input_col, output_col=output_col, time_col=time_col)
        summary = tr.summary()
        return estimate_trace(
            tr.input_tokens,
            tr.output_tokens,
            prof,
            method=method,
            batch_size=batch_size,
            duration_s=summary.duration_s,
            carbon_g_per_kwh=carbon_intensity,
            price_per_kwh=price,
            profile_name=prof.describe(),
        ), prof

    est, prof = _guard(run)
    if as_json:
        sys.stdout.write(json.dumps(est.to_dict(), indent=2, default=str) + "\n")
        return
    rel = est.uncertainty_j / est.total_j if est.total_j else 0.0
    table = Table(
        title=f"{trace}: {est.requests:,} requests · {est.method} · {est.profile}", show_header=False
    )
    table.add_row("total GPU energy", f"{est.total_kwh:.4f} kWh ± {rel:.1%}  ({est.total_j / 1e3:,.1f} kJ)")
    table.add_row(
        "per request",
        f"mean {est.request_mean_j:.1f} J · p50 {est.request_p50_j:.1f} J · p90 {est.request_p90_j:.1f} J",
    )
    table.add_row("per output token", f"{est.j_per_output_token:.4f} J (prefill included)")
    table.add_row("prefill / decode", f"{est.prefill_share:.1%} / {1 - est.prefill_share:.1%}")
    table.add_row(
        "FLOPs estimate",
        f"{est.flops_j / 1e3:,.1f} kJ at peak ({est.flops_half_util_j / 1e3:,.1f} kJ at 50%"
        f" utilisation): the profile's estimate is {est.flops_ratio:.2f}× the FLOPs one",
    )
    if est.duration_s:
        day = 86400 / est.duration_s
        table.add_row("at the trace's rate", f"{est.total_kwh * day:.2f} kWh/day")
    if est.co2_g is not None:
        table.add_row(
            "CO2", f"{est.co2_g:,.1f} g ({est.co2_g / est.requests * 1000:,.2f} g per 1,000 requests)"
        )
    if est.cost is not None:
        table.add_row("cost", f"{est.cost:,.4f} ({est.cost / est.requests * 1000:,.4f} per 1,000 requests)")
    if est.dropped:
        table.add_row("dropped", f"{est.dropped:,} requests above the bins' caps (p1 rule)")
    if est.outside_calibration:
        table.add_row(
            "outside calibration",
            f"{est.outside_calibration:,} requests beyond the measured lengths "
            "(per-token energy held at the grid edge)",
        )
    console.print(table)
    if est.per_bin:
        bt = Table(title=f"largest {bins} bins by energy")
        for col in ("input ≤", "output ≤", "requests", "batch", "J/request", "energy kJ"):
            bt.add_column(col, justify="right")
        for row in sorted(est.per_bin, key=lambda r: -r["energy_j"])[:bins]:
            bt.add_row(
                str(row["input_bin_max"]),
                str(row["output_bin_max"]),
                f"{row['requests']:,}",
                f"{row['batch_size']:.0f}",
                f"{row['prefill_j_per_request'] + row['decode_j_per_request']:.1f}",
                f"{row['energy_j'] / 1e3:,.2f}",
            )
        console.print(bt)


@app.command()
def fit(
    out: Annotated[Path, typer.Option("-o", "--out", help="profile file to write")],
    db: DbOption = None,
    model: Annotated[str | None, typer.Option(help="select runs of this model")] = None,
    engine: Annotated[str | None, typer.Option(help="select runs of this engine")] = None,
    mode: Annotated[str | None, typer.Option(help="select runs of this mode")] = None,
) -> None:
    """Fit an energy profile (calibration grid + parametric model) from stored runs."""
    from llm_energy.modeling.profile import fit_profile

    def run() -> Any:
        with _open_store(db) as store:
            prof = fit_profile(
                store.runs_frame(), model=model, engine=engine, mode=mode, source=str(store.path)
            )
        prof.save(out)
        return prof

    prof = _guard(run)
    q = prof.fit_quality
    console.print(
        f"wrote {out}: {prof.describe()}; parametric rms error prefill "
        f"{prof.parametric.prefill_rms_rel_error:.1%}, decode {prof.parametric.decode_rms_rel_error:.1%}"
        + (f"; grid leave-one-out median {q['loo_median_rel_error']:.1%}" if q else "")
    )


@app.command()
def report(
    out: Annotated[Path, typer.Option("-o", "--out", help="HTML file to write (self-contained, offline)")],
    db: Annotated[
        Path | None, typer.Option("--db", help="results database (default: the bundled H100 calibration)")
    ] = None,
    trace: Annotated[str | None, typer.Option(help="also estimate this trace with the profile")] = None,
    profile: Annotated[str | None, typer.Option(help="profile for the estimate and fit quality")] = None,
) -> None:
    """Write one self-contained HTML report: environment, per-config table, plots, estimate, model fit."""
    from llm_energy.report import render_report, write_report
    from llm_energy.report.sample import bundled_calibration_frame

    def run() -> Path:
        if db is None:
            frame = bundled_calibration_frame()
        else:
            with _open_store(db) as store:
                frame = store.runs_frame()
        prof = est = None
        if profile is not None or trace is not None:
            from llm_energy.estimate import estimate_trace
            from llm_energy.modeling.profile import load_profile

            prof = load_profile(profile)
            if trace is not None:
                from llm_energy.workloads import load_trace

                tr = load_trace(trace)
                est = estimate_trace(
                    tr.input_tokens, tr.output_tokens, prof, duration_s=tr.summary().duration_s
                )
        return write_report(out, render_report(frame, estimate=est, profile=prof))

    path = _guard(run)
    console.print(f"wrote {path}")


@app.command()
def plot(
    kind: Annotated[
        str,
        typer.Argument(help="energy-vs-batch | phase-split | energy-vs-input | energy-vs-output | pareto"),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="PNG or SVG file")],
    db: Annotated[
        Path | None, typer.Option("--db", help="results database (default: bundled H100 calibration)")
    ] = None,
) -> None:
    """Write one plot of stored runs as PNG or SVG."""
    from llm_energy.report import energy_vs_batch, energy_vs_length, pareto_frontier, phase_split, save_figure
    from llm_energy.report.sample import bundled_calibration_frame

    makers: dict[str, Any] = {
        "energy-vs-batch": energy_vs_batch,
        "phase-split": phase_split,
        "pareto": pareto_frontier,
        "energy-vs-input": lambda f: energy_vs_length(f, axis="input"),
        "energy-vs-output": lambda f: energy_vs_length(f, axis="output"),
    }

    def run() -> None:
        if kind not in makers:
            raise ConfigError(f"unknown plot {kind!r}; valid: {', '.join(makers)}")
        if db is None:
            frame = bundled_calibration_frame()
        else:
            with _open_store(db) as store:
                frame = store.runs_frame()
        save_figure(makers[kind](frame), out)

    _guard(run)
    console.print(f"wrote {out}")


@app.command()
def env(as_json: JsonOption = False) -> None:
    """Show what the meters can see: GPUs, energy counters, update period, CPU/DRAM sensors."""
    from llm_energy.env import collect_env
    from llm_energy.meters import detect_devices

    def run() -> dict[str, Any]:
        found = detect_devices()
        return collect_env(found.gpus, found.cpus, found.notes)

    info = _guard(run)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    table = Table(title="llm-energy environment", show_header=False)
    for key in (
        "host",
        "platform",
        "python",
        "cpu_model",
        "cpu_count",
        "gpu_count",
        "gpu_name",
        "driver",
        "power_limit_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
    ):
        table.add_row(key, str(info.get(key)))
    for gpu in info["gpus"]:
        table.add_row("gpu update period", f"{gpu.get('update_period_s', 0) * 1e3:.0f} ms")
    table.add_row("cpu meters", "; ".join(info["cpu_meters"]))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    console.print(table)
    for note in info["notes"]:
        console.print(f"[yellow]note:[/] {note}")


@app.command()
def models(as_json: JsonOption = False) -> None:
    """List the bundled model architectures with parameter counts."""
    from llm_energy.architectures import architecture_names, load_architecture, param_count, weight_bytes

    rows: list[dict[str, Any]] = []
    for name in architecture_names():
        arch = load_architecture(name)
        rows.append(
            {
                "name": name,
                "model_type": arch.model_type,
                "params": param_count(arch),
                "layers": arch.num_layers,
                "hidden": arch.hidden_size,
                "context": arch.max_context_tokens,
                "bf16_weights_gb": weight_bytes(arch) / 1e9,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="bundled architectures (random weights; or pass a local checkpoint dir)")
    for col in ("name", "type", "params", "layers", "hidden", "context", "bf16 weights"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["model_type"],
            f"{r['params'] / 1e9:.3f} B",
            str(r["layers"]),
            str(r["hidden"]),
            str(r["context"]),
            f"{r['bf16_weights_gb']:.2f} GB",
        )
    console.print(table)


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="output file: .csv or .parquet")],
    db: DbOption = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status (ok | oom | error)")] = None,
) -> None:
    """Export stored runs (one row per run) to CSV or Parquet."""
    from llm_energy.store import export_runs

    def run() -> int:
        with _open_store(db) as store:
            return int(export_runs(store, out, status=status))

    n = _guard(run)
    console.print(f"wrote {n} runs to {out}")


def main() -> None:
    """Entry point for `python -m llm_energy`."""
    app()

"""`llm-energy sweep`: measure every point of a sweep spec, resumably, under a progress bar."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli.app import DbOption, _fail, _guard, _open_store, app, console, err_console, esc, fold
from llm_energy.cli.measure import AllowGpuSettingsOption, _recover_gpu_settings
from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    from llm_energy.sweep.spec import Point, SweepSpec


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
    allow_gpu_settings: AllowGpuSettingsOption = False,
    max_minutes: Annotated[
        float | None,
        typer.Option(help="start no point after this many minutes (one running finishes); rerun to resume"),
    ] = None,
) -> None:
    """Measure every point of a sweep spec; rerunning resumes where it stopped."""
    from llm_energy.engines import check_installed
    from llm_energy.sweep.spec import load_spec
    from llm_energy.sweep.sweep import check_sweep_gpu_settings

    if max_minutes is not None and not max_minutes > 0:
        raise _fail(ConfigError(f"--max-minutes must be > 0, got {max_minutes}"))
    _guard(_recover_gpu_settings)
    spec = _guard(lambda: load_spec(spec_path))
    points = _guard(spec.points)
    if dry_run:
        _print_dry_run(spec, points, allowed=allow_gpu_settings or spec.allow_gpu_settings)
        return
    if executor == "local":  # Ray workers may have extras the driver lacks; they check on their own
        engines = sorted({p.engine for p in points})

        def check_engines() -> None:
            for engine in engines:
                check_installed(engine)

        _guard(check_engines)
    # Bad GPU settings are bad input: refused (exit 2) before the store is opened or anything is run.
    _guard(lambda: check_sweep_gpu_settings(spec, points, allow=allow_gpu_settings, executor=executor))
    summary, path = _guard(
        lambda: _run_with_progress(
            spec,
            len(points),
            db,
            executor=executor,
            retry_failed=retry_failed,
            address=address,
            allow_gpu_settings=allow_gpu_settings,
            time_budget_s=None if max_minutes is None else max_minutes * 60,
        )
    )
    over = (
        f", {summary.over_budget} not started (--max-minutes spent; rerun to resume)"
        if summary.over_budget
        else ""
    )
    console.print(
        f"{summary.total} points: {summary.measured} measured ({summary.ok} ok runs, {summary.oom} oom, "
        f"{summary.error} error), {summary.skipped} already stored, {summary.infeasible} infeasible "
        f"(not tried){over} → {esc(path)}"
    )
    for line in summary.failures[:20]:
        err_console.print(f"[yellow]{esc(line)}[/]")
    if summary.error:
        raise typer.Exit(1)


def _print_dry_run(spec: SweepSpec, points: Sequence[Point], *, allowed: bool) -> None:
    """Print the points (with their GPU settings, when the spec has any) and a rough GPU-time estimate."""
    from llm_energy.sweep.runner import RunOptions
    from llm_energy.sweep.sweep import estimate_gpu_s

    settings = spec.changes_gpu_settings
    table = Table(title=esc(f"sweep {spec.name}: {len(points)} points × {spec.repeats} repeats"))
    for col in ("model", "engine", "mode", "batch", "input", "output"):
        table.add_column(col)
    if settings:
        table.add_column("SM clock (MHz)")
        table.add_column("power limit (W)")
    table.add_column("point_id")
    for p in points:
        gpu_cols = [str(p.gpu_clock_mhz or "-"), f"{p.power_limit_w:g}" if p.power_limit_w else "-"]
        table.add_row(
            esc(p.model),
            p.engine,
            esc(p.mode),
            str(p.batch_size),
            str(p.input_len),
            str(p.output_len),
            *(gpu_cols if settings else []),
            p.point_id(),
        )
    console.print(fold(table))
    if settings and not allowed:
        console.print(
            "[yellow]this sweep changes GPU settings: running it needs `allow_gpu_settings: true` in the "
            "spec or --allow-gpu-settings[/]"
        )
    est = estimate_gpu_s(points, RunOptions(target_window_s=spec.window_s, repeats=spec.repeats), spec.idle_s)
    console.print(
        f"estimated {_device_time(points)} time {_minutes(est)} (rough: load, compile per point, 3 windows "
        "per repeat; points already stored are skipped when run)"
    )


def _minutes(seconds: float) -> str:
    """`< 1 min` under a minute (never `≤ 0 min`), else `≤ N min` rounded up."""
    return "< 1 min" if seconds < 60 else f"≤ {math.ceil(seconds / 60):,} min"


def _device_time(points: Sequence[Point]) -> str:
    """What the estimate is of: GPU time, or wall time where every point runs on the CPU or is simulated."""
    from llm_energy.engines import engine_descriptor

    off_gpu = all(p.device == "cpu" or engine_descriptor(p.engine).simulated for p in points)
    return "wall" if off_gpu else "GPU"


def _last_point(result: Any) -> str:
    """The progress bar's note on the last point: its J/token and what the figure is (GPU or CPU estimate)."""
    from llm_energy.cli.measure import phase_summary

    if result.status != "ok" or "total" not in result.phases:
        return f"last: {esc(result.status)}"
    row = phase_summary(result, "total")
    if row["energy_per_token_j"] is None:
        return "last: ok"
    gpu = any(d.startswith("gpu:") for d in row["domains"])
    what = (
        ""
        if gpu and row["source"] == "measured"
        else f" ({'GPU' if gpu else 'CPU'}, {row['source'] or 'none'})"
    )
    return f"last {row['energy_per_token_j']:.4g} J/token{esc(what)}"


def _run_with_progress(spec: SweepSpec, total: int, db: Path | None, **kwargs: Any) -> tuple[Any, Path]:
    """Run the sweep into the store under a progress bar (on stderr); return its summary and the path."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from llm_energy.sweep.sweep import run_sweep

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
        task = progress.add_task(esc(spec.name), total=total, last="")

        def on_point(s: Any) -> None:
            last = "" if s.last is None else _last_point(s.last)
            progress.update(task, completed=s.settled, last=last)

        return run_sweep(spec, store, on_point=on_point, **kwargs), store.path

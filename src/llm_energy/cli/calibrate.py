"""`llm-energy calibrate`: plan, measure and fit a profile of one engine on this GPU within a time budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llm_energy.cli.app import (
    DbOption,
    JsonOption,
    _engine_options,
    _fail,
    _guard,
    _open_store,
    app,
    console,
    err_console,
)
from llm_energy.errors import ConfigError


@app.command()
def calibrate(
    engine: Annotated[str, typer.Option(help="engine to calibrate (vllm, hf, hf-paged, simulated)")] = "vllm",
    mode: Annotated[str | None, typer.Option(help="engine mode (e.g. cudagraphs, eager)")] = None,
    model: Annotated[str, typer.Option(help="bundled architecture or checkpoint directory")] = "llama-3.1-8b",
    gpu_minutes: Annotated[float, typer.Option(help="GPU-time budget, engine load included")] = 10.0,
    max_input: Annotated[
        int | None, typer.Option(help="longest prompt to calibrate (default: the model's context)")
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="target GPU name (default: the one NVML sees)")] = None,
    option: Annotated[list[str] | None, typer.Option(help="engine option KEY=VALUE (repeatable)")] = None,
    device: Annotated[str, typer.Option(help="auto | cuda | cuda:N | cpu")] = "auto",
    window_s: Annotated[float, typer.Option(help="each phase window lasts at least this long")] = 1.0,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="profile file to write")] = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and its predicted time")] = False,
    as_json: JsonOption = False,
) -> None:
    """Pick the points that pin the physical model, measure them (resumable), fit, and report its error."""
    from llm_energy.sweep.calibrate import planned_seconds
    from llm_energy.sweep.calibration_run import make_plan

    opts = _guard(lambda: _engine_options(option))
    plan = _guard(
        lambda: make_plan(
            model=model,
            engine=engine,
            mode=mode,
            gpu_name=gpu,
            gpu_minutes=gpu_minutes,
            max_input=max_input,
            options=opts,
            device=device,
            window_s=window_s,
        )
    )
    predicted = planned_seconds(plan.points, engine)
    if dry_run or not as_json:
        _print_plan(plan, predicted)
    if dry_run:
        return
    if out is None:
        raise _fail(ConfigError("calibrate needs -o/--out PROFILE.json (or --dry-run)"))
    _guard(lambda: _check_writable(out))
    prof = _guard(
        lambda: _measure_and_fit(
            plan, db, out, engine, mode, model, budget_s=gpu_minutes * 60, show=not as_json
        )
    )
    q = prof.fit_quality.get("loo_energy", {})
    if as_json:
        sys.stdout.write(
            json.dumps(
                {"profile": str(out), "points": prof.points, "fit_quality": prof.fit_quality},
                indent=2,
                default=str,
            )
            + "\n"
        )
        return
    console.print(
        f"wrote {escape(str(out))}: {escape(prof.describe())}; physical model leave-one-out over every "
        f"point: mean {q.get('mean_abs_rel_error', float('nan')):.1%}, "
        f"max {q.get('max_abs_rel_error', float('nan')):.1%}"
    )


def _check_writable(out: Path) -> None:
    parent = out.expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write profile {out}: folder {parent} does not exist")
    if out.exists() and not out.is_file():
        raise ConfigError(f"cannot write profile {out}: not a file")


def _print_plan(plan: Any, predicted: float) -> None:
    t = Table(
        title=escape(f"calibration plan on {plan.gpu.name} ({plan.gpu_source}): {len(plan.points)} points")
    )
    for col in ("batch", "input", "output", "predicted s", "pins"):
        t.add_column(col, overflow="fold")
    for p in plan.points:
        t.add_row(str(p.batch_size), str(p.input_len), str(p.output_len), f"{p.est_s:.1f}", p.purpose)
    console.print(t)
    console.print(
        f"predicted GPU time {predicted / 60:.1f} min (engine load included; from the bundled profile "
        f"{plan.prior_name}, rescaled to this GPU's published peaks where it was measured on another)"
    )


def _measure_and_fit(
    plan: Any,
    db: Path | None,
    out: Path,
    engine: str,
    mode: str | None,
    model: str,
    *,
    budget_s: float,
    show: bool,
) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from llm_energy.modeling.profile import fit_profile
    from llm_energy.sweep.calibration_run import run_plan

    with (
        _open_store(db) as store,
        Progress(
            TextColumn("[bold]calibrating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not show,
        ) as bar,
    ):
        task = bar.add_task("points", total=len(plan.points))
        # The budget is kept as well as predicted: no point starts once it is spent, and the fit uses what
        # was measured (a device call's time limit would otherwise kill a point half-way).
        summary = run_plan(
            plan,
            store,
            budget_s=budget_s,
            on_point=lambda s: bar.update(task, completed=s.settled),
        )
        if summary.over_budget:
            err_console.print(
                f"the {budget_s / 60:.1f} GPU-minute budget was spent: {summary.over_budget} of "
                f"{len(plan.points)} planned point(s) not started (the same --db resumes them)"
            )
        if summary.failures:
            err_console.print(
                f"{len(summary.failures)} point(s) failed: " + escape("; ".join(summary.failures[:3]))
            )
        frame = store.runs_frame()
        prof = fit_profile(frame, model=model, engine=engine, mode=mode, source=str(store.path))
    prof.save(out)
    return prof

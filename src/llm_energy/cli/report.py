"""Commands that report: one self-contained HTML report, single plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llm_energy.cli import (
    _guard,
    _open_store,
    app,
    console,
)
from llm_energy.errors import ConfigError


@app.command()
def report(
    out: Annotated[Path, typer.Option("-o", "--out", help="HTML file to write (self-contained, offline)")],
    db: Annotated[
        Path | None, typer.Option("--db", help="results database (default: the bundled H100 calibration)")
    ] = None,
    trace: Annotated[str | None, typer.Option(help="also estimate this trace with the profile")] = None,
    profile: Annotated[str | None, typer.Option(help="profile for the estimate and fit quality")] = None,
    carbon_intensity: Annotated[
        str | None, typer.Option(help="grid intensity for the estimate: gCO2/kWh or a region")
    ] = None,
    price: Annotated[float | None, typer.Option(help="electricity price per kWh for the estimate")] = None,
) -> None:
    """Write one self-contained HTML report: environment, per-config table, plots, estimate, model fit."""
    from llm_energy.report import render_report, write_report
    from llm_energy.report.sample import bundled_calibration_frame

    def run() -> Path:
        from llm_energy.carbon import check_price, parse_carbon_intensity

        grid = parse_carbon_intensity(carbon_intensity)
        check_price(price)
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
                    tr.input_tokens,
                    tr.output_tokens,
                    prof,
                    duration_s=tr.summary().duration_s,
                    carbon_g_per_kwh=grid.g_per_kwh if grid else None,
                    price_per_kwh=price,
                    carbon_source=grid.label if grid else None,
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

"""Commands that report: one self-contained HTML report, single plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llm_energy.cli.app import (
    _guard,
    _open_store,
    app,
    console,
    esc,
)
from llm_energy.errors import ConfigError


@app.command()
def report(
    out: Annotated[Path, typer.Option("-o", "--out", help="HTML file to write (self-contained, offline)")],
    db: Annotated[
        Path | None, typer.Option("--db", help="results database (default: every bundled H100 calibration)")
    ] = None,
    trace: Annotated[str | None, typer.Option(help="also estimate this trace with the profile")] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            help="profile (file or bundled name); repeatable: the first is the estimate's and the fit's, "
            "all are compared with --validation runs and searched by --slo"
        ),
    ] = None,
    carbon_intensity: Annotated[
        str | None, typer.Option(help="grid intensity for the estimate: gCO2/kWh or a region")
    ] = None,
    price: Annotated[float | None, typer.Option(help="electricity price per kWh for the estimate")] = None,
    validation: Annotated[
        list[Path] | None,
        typer.Option(
            help="measured validation run JSON (llm-energy validate --out); repeatable; compared with "
            "the --profile of its configuration"
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option(help="with --trace: add the recommendation for this SLO, e.g. ttft=2s,tpot=100ms"),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="--slo: arrival rate, req/s (default: the trace's own)")
    ] = None,
) -> None:
    """Write one self-contained HTML report: environment, configurations, plots, estimate, model fit.

    With --validation, measured validation runs beside the models' estimates; with --trace and --slo,
    the recommended configuration for that SLO (modelled).
    """
    from llm_energy.report import render_report, write_report
    from llm_energy.report.sample import all_bundled_calibrations_frame

    def run() -> Path:
        from llm_energy.carbon import check_price, parse_carbon_intensity
        from llm_energy.report.validation_section import load_validation_runs, validation_entries

        if slo is not None and trace is None:
            raise ConfigError("--slo needs --trace (the workload to recommend a configuration for)")
        if rate is not None and slo is None:
            raise ConfigError("--rate is the recommendation's arrival rate: give it with --slo")
        grid = parse_carbon_intensity(carbon_intensity)
        check_price(price)
        if slo is not None:
            from llm_energy.workloads.slo import parse_slo

            parse_slo(slo)  # a malformed SLO is refused before anything is loaded
        runs = load_validation_runs(validation or [])
        if db is None:
            frame = all_bundled_calibrations_frame()
        else:
            with _open_store(db) as store:
                frame = store.runs_frame()
        from llm_energy.modeling.profile import DEFAULT_PROFILE, load_profile

        profiles = {name: load_profile(name) for name in profile or []}
        prof = est = rec = None
        if profiles or trace is not None:
            prof = next(iter(profiles.values())) if profiles else load_profile(None)
        if trace is not None:
            from llm_energy.estimate import estimate_trace
            from llm_energy.workloads import load_trace

            assert prof is not None
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
            if slo is not None:
                from llm_energy.report.recommendation_section import recommend_for_report

                searched = profiles or {DEFAULT_PROFILE: prof}
                rec = recommend_for_report(searched, tr, slo, rate_per_s=rate, grid=grid, price_per_kwh=price)
        html_text = render_report(
            frame,
            estimate=est,
            profile=prof,
            validation=validation_entries(runs, profiles),
            recommendation=rec,
        )
        return write_report(out, html_text)

    path = _guard(run)
    console.print(f"wrote {esc(path)}")


@app.command()
def plot(
    kind: Annotated[
        str,
        typer.Argument(help="energy-vs-batch | phase-split | energy-vs-input | energy-vs-output | pareto"),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="PNG or SVG file")],
    db: Annotated[
        Path | None, typer.Option("--db", help="results database (default: every bundled H100 calibration)")
    ] = None,
) -> None:
    """Write one plot of stored runs as PNG or SVG."""
    from llm_energy.report import energy_vs_batch, energy_vs_length, pareto_frontier, phase_split, save_figure
    from llm_energy.report.sample import all_bundled_calibrations_frame

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
            frame = all_bundled_calibrations_frame()
        else:
            with _open_store(db) as store:
                frame = store.runs_frame()
        save_figure(makers[kind](frame), out)

    _guard(run)
    console.print(f"wrote {esc(out)}")

"""`llm-energy estimate`: read the trace in chunks, estimate with the chosen model, render the result."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llm_energy.cli.app import JsonOption, _guard, app, console, err_console, fold
from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from llm_energy.estimate import Estimate


@app.command()
def estimate(
    trace: Annotated[
        str, typer.Option(help="bundled trace (azure-conv, azure-code) or a trace file")
    ] = "azure-conv",
    profile: Annotated[
        str | None, typer.Option(help="profile file or bundled name (default: H100 vLLM)")
    ] = None,
    method: Annotated[
        str, typer.Option(help="physical (default) | binned | p1 | parametric | flops")
    ] = "physical",
    batch_size: Annotated[
        int | None, typer.Option(help="run requests at this batch (default: the largest the engine runs)")
    ] = None,
    online_rate: Annotated[
        float | None,
        typer.Option(help="arrival rate (req/s): batch from Little's law instead of the largest"),
    ] = None,
    strict_range: Annotated[
        bool, typer.Option("--strict-range", help="refuse requests outside the calibrated range")
    ] = False,
    target_gpu: Annotated[
        str | None,
        typer.Option(help="rescale the profile to this GPU by published peaks (a prior, not a measurement)"),
    ] = None,
    carbon_intensity: Annotated[
        str | None, typer.Option(help="grid intensity: gCO2/kWh or a region (e.g. germany, world)")
    ] = None,
    price: Annotated[float | None, typer.Option(help="electricity price per kWh")] = None,
    input_col: Annotated[str | None, typer.Option(help="input-length column of a generic trace")] = None,
    output_col: Annotated[str | None, typer.Option(help="output-length column of a generic trace")] = None,
    time_col: Annotated[str | None, typer.Option(help="arrival-time column of a generic trace")] = None,
    bins: Annotated[int, typer.Option(help="bins to show in the table")] = 12,
    as_json: JsonOption = False,
) -> None:
    """Estimate a real trace's GPU energy from a fitted profile (no GPU needed), beside the FLOPs estimate."""
    est = _guard(
        lambda: run_estimate(
            trace=trace,
            profile=profile,
            method=method,
            batch_size=batch_size,
            online_rate=online_rate,
            strict_range=strict_range,
            target_gpu=target_gpu,
            carbon_intensity=carbon_intensity,
            price=price,
            columns=(input_col, output_col, time_col),
            show_progress=not as_json,
        )
    )
    if est.outside_calibration:
        err_console.print(
            f"warning: {est.outside_request_share:.1%} of requests and {est.outside_energy_share:.1%} of the "
            "energy are outside the calibrated range (extrapolated; the uncertainty widens there; "
            "--strict-range refuses)",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        sys.stdout.write(json.dumps(est.to_dict(), indent=2, default=str) + "\n")
        return
    render_estimate(console, est, trace, bins)


def run_estimate(
    *,
    trace: str,
    profile: str | None,
    method: str,
    batch_size: int | None,
    online_rate: float | None,
    strict_range: bool,
    carbon_intensity: str | None,
    target_gpu: str | None = None,
    price: float | None,
    columns: tuple[str | None, str | None, str | None],
    show_progress: bool,
) -> Estimate:
    """Check every input, then stream the trace through the model (progress on stderr when asked)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from llm_energy.carbon import check_price, parse_carbon_intensity
    from llm_energy.estimate import batch_for_rate, estimate_chunks
    from llm_energy.modeling.models import model_for
    from llm_energy.modeling.profile import load_profile
    from llm_energy.workloads import iter_trace_chunks, load_trace

    grid = parse_carbon_intensity(carbon_intensity)
    check_price(price)
    prof = load_profile(profile)
    if target_gpu is not None:
        from llm_energy.modeling.transfer import transfer_profile

        prof = transfer_profile(prof, target_gpu)
    model_for(prof, method)  # an unknown method fails before the trace is read
    input_col, output_col, time_col = columns
    batch = batch_size
    if online_rate is not None:
        if batch_size is not None:
            raise ConfigError("give --batch-size or --online-rate, not both")
        tr = load_trace(trace, input_col=input_col, output_col=output_col, time_col=time_col)
        batch = batch_for_rate(prof, online_rate, tr.input_tokens, tr.output_tokens)
    span = [float("inf"), float("-inf")]

    def chunks() -> Any:
        for c in iter_trace_chunks(trace, input_col=input_col, output_col=output_col, time_col=time_col):
            if c.arrival_s is not None and len(c.arrival_s):
                span[0], span[1] = (
                    min(span[0], float(c.arrival_s.min())),
                    max(span[1], float(c.arrival_s.max())),
                )
            yield c.input_tokens, c.output_tokens

    from rich.console import Console

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not show_progress,
    ) as bar:
        task = bar.add_task("estimating: 0 requests", total=None)
        est = estimate_chunks(
            chunks(),
            prof,
            method=method,
            batch_size=batch,
            strict_range=strict_range,
            carbon_g_per_kwh=grid.g_per_kwh if grid else None,
            price_per_kwh=price,
            profile_name=prof.describe(),
            carbon_source=grid.label if grid else None,
            progress=lambda n: bar.update(task, description=f"estimating: {n:,} requests"),
        )
    duration = span[1] - span[0] if span[1] > span[0] else None
    from dataclasses import replace

    return replace(est, duration_s=duration)


def render_estimate(console: Console, est: Estimate, trace: str, bins: int) -> None:
    """The summary table, the per-class error bars and the largest bins (grid methods)."""
    rel = est.uncertainty_j / est.total_j if est.total_j else 0.0
    table = Table(
        title=escape(f"{trace}: {est.requests:,} requests · {est.method} · {est.profile}"), show_header=False
    )
    table.add_row(
        "total GPU energy", f"{est.total_kwh:.4f} kWh ± {rel:.1%} (1σ)  ({est.total_j / 1e3:,.1f} kJ)"
    )
    table.add_row(
        "per request",
        f"mean {est.request_mean_j:.1f} J · p50 {est.request_p50_j:.1f} J · p90 {est.request_p90_j:.1f} J",
    )
    table.add_row("per output token", f"{est.j_per_output_token:.4f} J (prefill included)")
    table.add_row("prefill / decode", f"{est.prefill_share:.1%} / {1 - est.prefill_share:.1%}")
    table.add_row(
        "outside calibration",
        f"{est.outside_calibration:,} requests ({est.outside_request_share:.1%}), "
        f"{est.outside_energy_share:.1%} of the energy (extrapolated by the model, wider error bars)",
    )
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
            "CO2", escape(f"{est.co2_g:,.1f} g at {est.carbon_g_per_kwh:g} gCO2/kWh ({est.carbon_source})")
        )
    if est.cost is not None:
        table.add_row("cost", f"{est.cost:,.4f} at {est.price_per_kwh:g} per kWh")
    if est.co2_g is not None or est.cost is not None:
        table.add_row("footprint", "; ".join(est.footprint().lines()) + " (GPU energy only)")
    if est.dropped:
        table.add_row(
            "dropped (p1 rule)",
            f"{est.dropped:,} of {est.requests_total:,} requests above the bins' caps; "
            f"kept {est.requests:,}; "
            f"scaled to every request: {est.scaled_total_j / 3.6e6:.4f} kWh",
        )
    console.print(fold(table))
    ct = Table(title="per input class (1σ)")
    for col in ("class", "requests", "energy kJ", "±", "extrapolated"):
        ct.add_column(col, justify="right")
    for c in est.per_class:
        ct.add_row(
            c["class"],
            f"{c['requests']:,}",
            f"{c['energy_j'] / 1e3:,.1f}",
            f"{c['rel_uncertainty']:.1%}",
            f"{c['outside_energy_share']:.0%}",
        )
    console.print(fold(ct))
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
        console.print(fold(bt))

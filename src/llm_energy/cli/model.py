"""Commands that model: estimate a trace from a profile, fit a profile from stored runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli import (
    DbOption,
    JsonOption,
    _guard,
    _open_store,
    app,
    console,
    err_console,
)
from llm_energy.errors import ConfigError


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
    online_rate: Annotated[
        float | None,
        typer.Option(help="arrival rate (req/s): batch from Little's law instead of the largest"),
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
    from llm_energy.estimate import batch_for_rate, estimate_trace
    from llm_energy.modeling.profile import load_profile
    from llm_energy.workloads import load_trace

    def run() -> Any:
        prof = load_profile(profile)
        tr = load_trace(trace, input_col=input_col, output_col=output_col, time_col=time_col)
        summary = tr.summary()
        batch = batch_size
        if online_rate is not None:
            if batch_size is not None:
                raise ConfigError("give --batch-size or --online-rate, not both")
            batch = batch_for_rate(prof, online_rate, tr.input_tokens, tr.output_tokens)
        return estimate_trace(
            tr.input_tokens,
            tr.output_tokens,
            prof,
            method=method,
            batch_size=batch,
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
def recommend(
    trace: Annotated[str, typer.Option(help="bundled trace or trace file")] = "azure-conv",
    slo: Annotated[str, typer.Option(help="latency SLO, e.g. ttft=2s,tpot=100ms")] = "ttft=2s,tpot=100ms",
    rate: Annotated[float | None, typer.Option(help="arrival rate, req/s (default: the trace's own)")] = None,
    profile: Annotated[
        list[str] | None, typer.Option(help="profile file or bundled name; repeatable")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recommend the least-energy configuration meeting the SLO at the trace's rate (modelled)."""
    from dataclasses import asdict

    from llm_energy.modeling.profile import DEFAULT_PROFILE, load_profile
    from llm_energy.recommend import recommend as search
    from llm_energy.serving import parse_slo
    from llm_energy.workloads import load_trace

    def run() -> Any:
        slo_s = parse_slo(slo)
        names = profile or [DEFAULT_PROFILE]
        profiles = {n: load_profile(n) for n in names}
        tr = load_trace(trace)
        r = rate if rate is not None else tr.summary().rate_per_s
        if r is None:
            raise ConfigError(f"trace {trace} has no arrival times: pass --rate")
        return search(profiles, tr.input_tokens, tr.output_tokens, rate_per_s=r, slo_s=slo_s)

    rec = _guard(run)
    if as_json:
        payload = {
            "choice": asdict(rec.choice) if rec.choice else None,
            "baseline": asdict(rec.baseline),
            "fastest": asdict(rec.fastest),
            "saving": rec.saving,
            "kwh_per_day_saved": rec.kwh_per_day_saved(),
            "rate_per_s": rec.rate_per_s,
            "pareto": [asdict(c) for c in rec.pareto()],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    table = Table(title=f"{trace} at {rec.rate_per_s:.2f} req/s, SLO {slo} (modelled from profiles)")
    for col in (
        "",
        "profile",
        "batch",
        "J/request",
        "TTFT ms",
        "TPOT ms",
        "req/s capacity",
        "SLO",
        "keeps up",
    ):
        table.add_column(col)
    rows = [("choice", rec.choice), ("baseline (batch 1)", rec.baseline), ("fastest", rec.fastest)]
    rows += [("pareto", c) for c in rec.pareto()]
    for label, c in rows:
        if c is None:
            continue
        table.add_row(
            label,
            c.profile,
            str(c.batch_size),
            f"{c.energy_per_request_j:.1f} ± {c.uncertainty_per_request_j:.1f}",
            f"{c.ttft_s * 1e3:,.0f}",
            f"{c.tpot_s * 1e3:,.1f}",
            f"{c.throughput_per_s:,.1f}",
            "yes" if c.meets_slo else "no",
            "yes" if c.keeps_up else "no",
        )
    if not as_json:
        console.print(table)
    if rec.choice is None:
        closest = min(rec.candidates, key=lambda c: c.tpot_s)
        err_console.print(
            f"no configuration meets {slo} at this rate; closest: {closest.profile} batch "
            f"{closest.batch_size} (TTFT {closest.ttft_s * 1e3:,.0f} ms, TPOT {closest.tpot_s * 1e3:.1f} ms)"
        )
        raise typer.Exit(1)
    if not as_json:
        console.print(
            f"saving vs batch 1: {rec.saving:.1%} of energy per request, "
            f"{rec.kwh_per_day_saved():.2f} kWh/day at {rec.rate_per_s:.2f} req/s"
        )

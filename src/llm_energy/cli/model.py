"""Commands that model: estimate a trace from a profile, fit a profile from stored runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from llm_energy.recommend.validation import SampleSpec


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
    from llm_energy.carbon import check_price, parse_carbon_intensity
    from llm_energy.estimate import batch_for_rate, estimate_trace
    from llm_energy.modeling.profile import load_profile
    from llm_energy.workloads import load_trace

    def run() -> Any:
        grid = parse_carbon_intensity(carbon_intensity)
        check_price(price)
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
            carbon_g_per_kwh=grid.g_per_kwh if grid else None,
            price_per_kwh=price,
            profile_name=prof.describe(),
            carbon_source=grid.label if grid else None,
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
        table.add_row("CO2", f"{est.co2_g:,.1f} g at {est.carbon_g_per_kwh:g} gCO2/kWh ({est.carbon_source})")
    if est.cost is not None:
        table.add_row("cost", f"{est.cost:,.4f} at {est.price_per_kwh:g} per kWh")
    if est.co2_g is not None or est.cost is not None:
        table.add_row("footprint", "; ".join(est.footprint().lines()) + " (GPU energy only)")
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
    slo: Annotated[
        str | None, typer.Option(help="latency SLO, e.g. ttft=2s,tpot=100ms (default that)")
    ] = None,
    slo_preset: Annotated[
        str | None,
        typer.Option(
            help="SLO per input class: dynamollm (TTFT 250/400/2000 ms, TPOT 100 ms); implies --per-class"
        ),
    ] = None,
    per_class: Annotated[
        bool, typer.Option("--per-class", help="also plan a configuration per short/medium/long class")
    ] = False,
    rate: Annotated[float | None, typer.Option(help="arrival rate, req/s (default: the trace's own)")] = None,
    profile: Annotated[
        list[str] | None, typer.Option(help="profile file or bundled name; repeatable")
    ] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs available (replicas where the rate needs)")] = None,
    gpu_clocks_mhz: Annotated[
        str | None, typer.Option(help="SM clocks to model beside the maximum, e.g. 1600,1400 (DVFS)")
    ] = None,
    max_clock_mhz: Annotated[
        float | None, typer.Option(help="maximum SM clock for the DVFS model (default: from the GPU name)")
    ] = None,
    carbon_intensity: Annotated[
        str | None, typer.Option(help="grid intensity: gCO2/kWh or a region (e.g. germany, world)")
    ] = None,
    price: Annotated[float | None, typer.Option(help="electricity price per kWh")] = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate", help="run the choice and the baseline on a trace sample and measure (needs the GPU)"
        ),
    ] = False,
    sample: Annotated[int, typer.Option(help="--validate: requests drawn from the trace")] = 300,
    seed: Annotated[int, typer.Option(help="--validate: seed of the sample and the prompts")] = 0,
    max_input_tokens: Annotated[
        int | None, typer.Option(help="--validate: sample only requests with input ≤ this")
    ] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option(help="--validate: sample only requests with output ≤ this")
    ] = None,
    device: Annotated[str, typer.Option(help="--validate: auto | cuda | cuda:N | cpu")] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(help="--validate: directory for the recommendation, runs and summary (JSON)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recommend the least-energy configuration meeting the SLO at the trace's rate (modelled).

    With --validate, the choice and the baseline then run on the same sample of the trace and are
    measured: energy per request against the model, the saving, latency and SLO attainment.
    """
    from llm_energy.recommend.validation import SampleSpec

    spec = SampleSpec(trace, sample, seed, max_input_tokens, max_output_tokens) if validate else None
    _recommend_command(
        trace,
        slo,
        slo_preset,
        per_class,
        rate,
        profile,
        gpus,
        gpu_clocks_mhz,
        max_clock_mhz,
        carbon_intensity,
        price,
        as_json,
        spec,
        device,
        out,
    )


def _parse_clocks(spec: str | None) -> list[float] | None:
    """Parse `--gpu-clocks-mhz` (comma-separated MHz)."""
    if spec is None:
        return None
    try:
        clocks = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"bad --gpu-clocks-mhz {spec!r}: expected MHz numbers, e.g. 1600,1400") from None
    if not clocks:
        raise ConfigError(f"bad --gpu-clocks-mhz {spec!r}: no clock given")
    return clocks


def _recommend_command(
    trace: str,
    slo: str | None,
    slo_preset: str | None,
    per_class: bool,
    rate: float | None,
    profile: list[str] | None,
    gpus: int | None,
    gpu_clocks_mhz: str | None,
    max_clock_mhz: float | None,
    carbon_intensity: str | None,
    price: float | None,
    as_json: bool,
    validation: SampleSpec | None = None,
    device: str = "auto",
    out: Path | None = None,
) -> None:
    from llm_energy.carbon import check_price, parse_carbon_intensity
    from llm_energy.modeling.profile import DEFAULT_PROFILE, load_profile
    from llm_energy.recommend import recommend as search
    from llm_energy.recommend.classes import SLO_PRESETS, plan_per_class
    from llm_energy.recommend.output import (
        print_class_plan,
        print_recommendation,
        print_validation,
        recommendation_dict,
    )
    from llm_energy.recommend.validation import configs_to_measure, validate_recommendation
    from llm_energy.serving import parse_slo
    from llm_energy.workloads import load_trace

    def run() -> Any:
        if slo is not None and slo_preset is not None:
            raise ConfigError("give --slo or --slo-preset, not both")
        if slo_preset is not None and slo_preset not in SLO_PRESETS:
            raise ConfigError(f"unknown SLO preset {slo_preset!r}; valid: {', '.join(SLO_PRESETS)}")
        # With a preset the whole-trace search takes each metric's strictest class bound.
        slo_s = (
            {m: min(b) for m, b in SLO_PRESETS[slo_preset].items()}
            if slo_preset
            else parse_slo(slo or "ttft=2s,tpot=100ms")
        )
        clocks = _parse_clocks(gpu_clocks_mhz)
        grid = parse_carbon_intensity(carbon_intensity)
        check_price(price)
        names = profile or [DEFAULT_PROFILE]
        profiles = {n: load_profile(n) for n in names}
        tr = load_trace(trace)
        r = rate if rate is not None else tr.summary().rate_per_s
        if r is None:
            raise ConfigError(f"trace {trace} has no arrival times: pass --rate")
        opts: dict[str, Any] = {
            "rate_per_s": r,
            "clocks_mhz": clocks,
            "max_gpus": gpus,
            "max_clock_mhz": max_clock_mhz,
        }
        rec = search(profiles, tr.input_tokens, tr.output_tokens, slo_s=slo_s, **opts)
        plan = None
        if per_class or slo_preset:
            plan = plan_per_class(
                profiles,
                tr.input_tokens,
                tr.output_tokens,
                slo_s=None if slo_preset else slo_s,
                preset=slo_preset,
                **opts,
            )
        if validation is not None and rec.choice is not None:
            configs_to_measure(rec)  # a configuration that cannot be measured: refused before any output
        return rec, plan, grid, profiles

    rec, plan, grid, profiles = _guard(run)
    slo_text = slo or "ttft=2s,tpot=100ms"
    if slo_preset:
        slo_text = f"preset {slo_preset} (whole trace: strictest bounds)"
    payload = recommendation_dict(rec, grid, price)
    if plan is not None:
        payload["per_class"] = plan.to_dict()
    if not as_json:
        print_recommendation(
            console,
            rec,
            f"{trace} at {rec.rate_per_s:.2f} req/s, SLO {slo_text} (modelled from profiles)",
            grid,
            price,
        )
        if plan is not None:
            print_class_plan(console, plan)
    failed = rec.choice is None or (plan is not None and not plan.complete)
    if rec.choice is None:
        closest = rec.closest()
        err_console.print(
            f"no configuration meets {slo_text} at this rate; closest: {closest.label()} "
            f"(TTFT {closest.ttft_s * 1e3:,.0f} ms, TPOT {closest.tpot_s * 1e3:.1f} ms, "
            f"{closest.throughput_per_s:,.2f} req/s capacity)"
            + ("; nothing to validate" if validation is not None else "")
        )
    if plan is not None and not plan.complete:
        missing = [c.name for c in plan.classes if c.recommendation.choice is None]
        err_console.print(f"no configuration meets the SLO for class(es) {', '.join(missing)}")
    if validation is not None and rec.choice is not None:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "recommendation.json").write_text(json.dumps(payload, indent=2) + "\n")
        check = _guard(
            lambda: validate_recommendation(
                rec, profiles, validation, device=device, out_dir=out, on_status=err_console.print
            )
        )
        payload["validation"] = check.to_dict()
        if out is not None:
            (out / "validation.json").write_text(json.dumps(payload["validation"], indent=2) + "\n")
        if not as_json:
            print_validation(console, check)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    if failed:
        raise typer.Exit(1)

"""`llm-energy recommend`: the least-energy configuration under a latency SLO, and its measured check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llm_energy.cli.app import (
    JsonOption,
    _fail,
    _guard,
    app,
    console,
    err_console,
    esc,
)
from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    from llm_energy.recommend.validation import SampleSpec


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
    scorer: Annotated[
        str, typer.Option(help="model (mean-value load, default) | simulate (the trace's arrivals, bursts)")
    ] = "model",
    window: Annotated[
        str | None, typer.Option(help="--scorer simulate: START,DURATION of the trace in seconds")
    ] = None,
    validate_online: Annotated[
        bool,
        typer.Option(
            "--validate-online",
            help="--scorer simulate: replay the choice and the runner-up through vLLM servers (GPU)",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recommend the least-energy configuration meeting the SLO at the trace's rate (modelled).

    With --validate, the choice and the baseline then run on the same sample of the trace and are
    measured: energy per request against the model, the saving, latency and SLO attainment. With
    --scorer simulate, every candidate (profile × max_num_seqs × instances × clocks) is simulated on the
    trace's real arrivals instead (without --profile: the H200 vLLM profiles, CUDA graphs and eager).
    """
    from llm_energy.recommend.validation import SampleSpec

    if scorer not in ("model", "simulate"):
        raise _fail(ConfigError(f"unknown --scorer {scorer!r}; valid: model, simulate"))
    if scorer == "simulate":
        from llm_energy.cli.recommend_sim import run_simulated_recommend
        from llm_energy.modeling.profile import SIMULATION_PROFILES
        from llm_energy.workloads.slo import parse_slo

        slo_s = _guard(lambda: parse_slo(slo or "ttft=2s,tpot=100ms"))
        clocks = _guard(lambda: _parse_clocks(gpu_clocks_mhz))
        ok = run_simulated_recommend(
            trace, profile or list(SIMULATION_PROFILES), slo_s, gpus=gpus or 1, window=window, clocks=clocks,
            as_json=as_json, validate_online=validate_online,
        )  # fmt: skip
        if not ok:
            raise typer.Exit(1)
        return

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
    from llm_energy.recommend.output import print_class_plan, print_recommendation, recommendation_dict

    rec, plan, grid, profiles = _guard(
        lambda: _search(
            trace, slo, slo_preset, per_class, rate, profile, gpus, gpu_clocks_mhz, max_clock_mhz,
            carbon_intensity, price, measurable=validation is not None,
        )
    )  # fmt: skip
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
    _say_what_failed(rec, plan, slo_text, validating=validation is not None)
    if validation is not None and rec.choice is not None:
        _validate(rec, profiles, validation, device, out, payload, show=not as_json)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    if failed:
        raise typer.Exit(1)


def _search(
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
    *,
    measurable: bool,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Check the inputs, then search: (recommendation, per-class plan or None, grid, profiles).

    Raises:
        ConfigError: a bad SLO, preset, clock list, grid, price, profile or trace, or (`measurable`)
            a chosen configuration that cannot be measured.
    """
    from llm_energy.carbon import check_price, parse_carbon_intensity
    from llm_energy.modeling.profile import DEFAULT_PROFILE, load_profile
    from llm_energy.recommend import recommend as search
    from llm_energy.recommend.classes import SLO_PRESETS, plan_per_class
    from llm_energy.recommend.validation import configs_to_measure
    from llm_energy.workloads import load_trace
    from llm_energy.workloads.slo import parse_slo

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
    if measurable and rec.choice is not None:
        configs_to_measure(rec)  # a configuration that cannot be measured: refused before any output
    return rec, plan, grid, profiles


def _say_what_failed(rec: Any, plan: Any, slo_text: str, *, validating: bool) -> None:
    """Print (stderr) the closest configuration when none meets the SLO, and classes left without one."""
    if rec.choice is None:
        closest = rec.closest()
        err_console.print(
            f"no configuration meets {esc(slo_text)} at this rate; closest: {esc(closest.label())} "
            f"(TTFT {closest.ttft_s * 1e3:,.0f} ms, TPOT {closest.tpot_s * 1e3:.1f} ms, "
            f"{closest.throughput_per_s:,.2f} req/s capacity)"
            + ("; nothing to validate" if validating else "")
        )
    if plan is not None and not plan.complete:
        missing = [c.name for c in plan.classes if c.recommendation.choice is None]
        err_console.print(f"no configuration meets the SLO for class(es) {esc(', '.join(missing))}")


def _validate(
    rec: Any,
    profiles: dict[str, Any],
    validation: SampleSpec,
    device: str,
    out: Path | None,
    payload: dict[str, Any],
    *,
    show: bool,
) -> None:
    """Measure the choice and the baseline (`--validate`); add the result to `payload` (and `out`)."""
    from llm_energy.recommend.output import print_validation
    from llm_energy.recommend.validation import validate_recommendation

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recommendation.json").write_text(json.dumps(payload, indent=2) + "\n")
    check = _guard(
        lambda: validate_recommendation(
            rec,
            profiles,
            validation,
            device=device,
            out_dir=out,
            on_status=lambda text: err_console.print(esc(text), highlight=False),
        )
    )
    payload["validation"] = check.to_dict()
    if out is not None:
        (out / "validation.json").write_text(json.dumps(payload["validation"], indent=2) + "\n")
    if show:
        print_validation(console, check)

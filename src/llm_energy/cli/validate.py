"""`llm-energy validate`: run a trace sample on an engine, measure, and compare with the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli.app import JsonOption, _engine_options, _guard, app, console, esc, fold, say
from llm_energy.errors import ConfigError


@app.command()
def validate(
    trace: Annotated[
        str, typer.Option(help="bundled trace (azure-conv, azure-code) or a trace file")
    ] = "azure-conv",
    sample: Annotated[int, typer.Option(help="requests to draw from the trace")] = 500,
    batch_size: Annotated[int, typer.Option(help="static: padded batch size; vllm: max_num_seqs")] = 16,
    model: Annotated[str, typer.Option(help="bundled architecture or local checkpoint")] = "llama-3.1-8b",
    engine: Annotated[str, typer.Option(help="hf | vllm | simulated")] = "hf",
    mode: Annotated[str | None, typer.Option(help="engine mode (eager | cudagraphs | ...)")] = None,
    device: Annotated[str, typer.Option(help="auto | cuda | cuda:N | cpu")] = "auto",
    seed: Annotated[int, typer.Option(help="seed of the sample and the prompts")] = 0,
    max_input_tokens: Annotated[
        int | None, typer.Option(help="sample only requests with input ≤ this")
    ] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option(help="sample only requests with output ≤ this")
    ] = None,
    batching: Annotated[str | None, typer.Option(help="static | continuous (default: the engine's)")] = None,
    option: Annotated[list[str] | None, typer.Option(help="engine option KEY=VALUE (repeatable)")] = None,
    idle_s: Annotated[float, typer.Option(help="seconds of idle power measured first")] = 3.0,
    out: Annotated[Path | None, typer.Option(help="write the measured run (JSON) here")] = None,
    measured: Annotated[Path | None, typer.Option(help="compare a run measured earlier instead")] = None,
    profile: Annotated[
        str | None, typer.Option(help="profile to compare with (file or bundled name)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run sampled trace requests with their true lengths, measure energy, compare with the models."""
    from llm_energy.modeling.profile import load_profile
    from llm_energy.validation.engine import measure_run
    from llm_energy.validation.models import compare
    from llm_energy.validation.offline import ValidationRun

    def run() -> tuple[Any, list[Any] | None]:
        _check_input(batching=batching, idle_s=idle_s, seed=seed, batch_size=batch_size)
        opts = _engine_options(option)
        prof = load_profile(profile) if profile is not None else None  # a bad profile fails before measuring
        if prof is not None and measured is None:
            _check_gpu_energy(engine, device)
        if measured is not None:
            result = ValidationRun.load(measured)
        else:
            result = measure_run(
                trace,
                sample,
                batch_size,
                model=model,
                engine=engine,
                mode=mode,
                device=device,
                seed=seed,
                max_input_tokens=max_input_tokens,
                max_output_tokens=max_output_tokens,
                batching=batching,
                options=opts,
                idle_s=idle_s,
                on_status=say,
            )
            if out is not None:
                result.save(out)
        return result, compare(result, prof) if prof is not None else None

    result, errors = _guard(run)
    if as_json:
        doc = {k: v for k, v in result.to_dict().items() if k not in ("input_tokens", "output_tokens")}
        doc["models"] = [e.to_dict() for e in errors] if errors else None
        print(json.dumps(doc, indent=1, default=str))
        return
    _render(result, errors, profile_given=profile is not None)


def _check_input(*, batching: str | None, idle_s: float, seed: int, batch_size: int) -> None:
    """Refuse bad options before anything is read or loaded (ConfigError: exit 2)."""
    from llm_energy.sweep.spec import check_seconds

    if batching not in (None, "static", "continuous"):
        raise ConfigError(f"--batching must be static or continuous, got {batching!r}")
    check_seconds("--idle-s", idle_s, allow_zero=True)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")


def _check_gpu_energy(engine: str, device: str) -> None:
    """Refuse to measure for a comparison that cannot happen: the profiles estimate GPU energy.

    Raises:
        ConfigError: the run would be on the CPU (no GPU energy to compare with).
    """
    from llm_energy.engines import check_installed, engine_descriptor
    from llm_energy.engines.devices import resolve_device

    if engine_descriptor(engine).simulated:
        return

    check_installed(engine)
    if resolve_device(device) == "cpu":
        raise ConfigError(
            "--profile compares GPU energy, but this run would be on the CPU (no GPU here, or --device cpu); "
            "measure without --profile (then --measured FILE --profile P on any machine) or use a GPU"
        )


def _render(result: Any, errors: list[Any] | None, *, profile_given: bool) -> None:
    measured = (
        f"measured {result.energy_j:,.0f} ± {result.uncertainty_j:,.0f} J in {result.duration_s:.1f} s "
        f"({result.j_per_request:.1f} J/request)"
        if result.energy_j > 0
        else f"no GPU energy measured (no GPU here; {result.duration_s:.1f} s)"
    )
    console.print(
        f"{result.trace}: {result.requests} requests (of {result.eligible_requests} eligible) · "
        f"{result.engine} {result.mode} · batch {result.batch_size} ({result.batching}) · {measured}",
        markup=False,
    )
    if errors:
        table = Table("model", "estimate J", "± J", "estimate / measured", "error")
        for e in errors:
            table.add_row(
                esc(e.method),
                f"{e.estimate_j:,.0f}",
                f"{e.uncertainty_j:,.0f}",
                f"{e.ratio:.3f}",
                f"{e.rel_error:+.1%}",
            )
        console.print(fold(table))
    elif not profile_given:
        console.print("no --profile given: measured only (compare later with --measured FILE --profile P)")

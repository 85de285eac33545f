"""`llm-energy compare`: a stored serving run's requests, online vs offline, energy side by side."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli.app import JsonOption, _engine_options, _guard, app, console, esc, fold, say
from llm_energy.errors import ConfigError


@app.command()
def compare(
    db: Annotated[Path, typer.Option("--db", help="results store holding the serving run (replay --db)")],
    run_id: Annotated[str | None, typer.Option(help="serving run to compare (default: the latest)")] = None,
    engine: Annotated[
        str | None, typer.Option(help="measure offline on this engine: vllm | simulated | hf")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="--engine: engine mode")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="offline batch (continuous: most sequences at once); default: online peak concurrency"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="--engine: auto | cuda | cuda:N | cpu")] = "auto",
    model: Annotated[
        str | None, typer.Option(help="--engine: model to run (default: the serving run's model)")
    ] = None,
    batching: Annotated[str, typer.Option(help="--engine: continuous | static")] = "continuous",
    option: Annotated[list[str] | None, typer.Option(help="--engine option KEY=VALUE (repeatable)")] = None,
    idle_s: Annotated[float, typer.Option(help="--engine: seconds of idle power measured first")] = 3.0,
    seed: Annotated[int, typer.Option(help="--engine: seed of the prompts")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="--engine: save the offline run (JSON) for --measured later")
    ] = None,
    measured: Annotated[
        Path | None, typer.Option(help="offline run of the same requests (validate/compare JSON)")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="model the offline energy from this profile (file or bundled name)")
    ] = None,
    method: Annotated[
        str, typer.Option(help="--profile: physical | binned | parametric | flops (p1 drops requests)")
    ] = "physical",
    as_json: JsonOption = False,
) -> None:
    """Energy of a stored serving run's requests online vs the same requests offline.

    The offline side is measured (--engine: the requests at their received lengths, continuous
    batching at the online peak concurrency; or --measured FILE from an earlier run) or modelled
    (--profile). Both sides are GPU joules with idle power, over the whole run.
    """
    from llm_energy.store import Store
    from llm_energy.validation.online import (
        compare_online_offline,
        load_request_set,
        measure_offline,
        offline_from_profile,
        offline_from_run,
    )

    def run() -> Any:
        if sum(x is not None for x in (engine, measured, profile)) != 1:
            raise ConfigError("give exactly one offline source: --engine E, --measured FILE or --profile P")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"--batch-size must be ≥ 1, got {batch_size}")
        if batching not in ("continuous", "static"):
            raise ConfigError(f"--batching must be continuous or static, got {batching!r}")
        if method not in ("physical", "binned", "parametric", "flops"):
            raise ConfigError(f"--method must be physical, binned, parametric or flops, got {method!r}")
        opts = _engine_options(option)
        with Store(db, read_only=True) as store:  # a missing or foreign --db: NotAStore, exit 2
            rs = load_request_set(store, run_id)
        batch = batch_size or max(rs.max_concurrency, 1)
        if profile is not None:
            from llm_energy.modeling.profile import load_profile

            prof = load_profile(profile)
            return compare_online_offline(
                rs, offline_from_profile(prof, rs, batch, method=method, name=profile), batch
            )
        if measured is not None:
            from llm_energy.validation.offline import ValidationRun

            offline_run = ValidationRun.load(measured)
            side = offline_from_run(offline_run, rs, str(measured))
            return compare_online_offline(rs, side, offline_run.batch_size)
        assert engine is not None
        name = model or rs.run.get("model")
        if not name:
            raise ConfigError(f"serving run {rs.run_id} stored no model: give --model")
        offline_run = measure_offline(
            rs,
            engine=engine,
            model=str(name),
            mode=mode,
            batch_size=batch,
            device=device,
            batching=batching,  # type: ignore[arg-type]
            options=opts,
            idle_s=idle_s,
            seed=seed,
            on_status=say,
        )
        if out is not None:
            offline_run.save(out)
        return compare_online_offline(rs, offline_from_run(offline_run, rs), batch)

    result = _guard(run)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
        return
    _render(result)


def _pm(value: float, bound: float, fmt: str) -> str:
    text = format(value, fmt)
    return f"{text} ± {format(bound, fmt)}" if math.isfinite(bound) else f"{text} (bound unknown)"


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def _render(c: Any) -> None:
    on, off = c.online, c.offline
    table = Table(
        "",
        esc(on.label),
        esc(off.label),
        "online / offline",
        title=esc(
            f"serving run {c.run_id[:12]} ({c.server or 'server'}, {c.model or '?'}): {on.requests} requests"
        ),
    )
    ratio = f"{c.ratio:.3f}"
    if math.isfinite(c.ratio_low):
        ratio += f" [{c.ratio_low:.3f}, {c.ratio_high:.3f}]"
    table.add_row(
        "total J",
        _pm(on.total_j, on.uncertainty_j, ",.1f"),
        _pm(off.total_j, off.uncertainty_j, ",.1f"),
        ratio,
    )
    table.add_row(
        "J/request mean",
        _pm(on.mean_j, on.mean_uncertainty_j, ".3f"),
        _pm(off.mean_j, off.mean_uncertainty_j, ".3f"),
        f"{c.ratio:.3f}",
    )
    table.add_row("J/request p50", f"{on.p50_j:.3f}", f"{off.p50_j:.3f}", f"{c.ratio_p50:.3f}")
    table.add_row("J/request p90", f"{on.p90_j:.3f}", f"{off.p90_j:.3f}", f"{c.ratio_p90:.3f}")
    table.add_row(
        "J/output token",
        _pm(on.j_per_output_token, on.j_per_output_token_uncertainty, ".4f"),
        _pm(off.j_per_output_token, off.j_per_output_token_uncertainty, ".4f"),
        f"{c.ratio:.3f}",
    )
    table.add_row("batch", f"peak {c.max_concurrency} in flight", f"{c.batch_size}", "")
    console.print(fold(table))
    console.print(f"online window: {on.window}", highlight=False, markup=False)
    console.print(f"offline window: {off.window}", highlight=False, markup=False)
    for w in c.online_windows:
        console.print(
            f"online {w['name']} window ({_num(w['duration_s'], '.1f')} s, {w['note']}): "
            f"{_num(w['j_per_request'], '.3f')} J/request, {_num(w['j_per_output_token'], '.4f')} J/token",
            highlight=False,
            markup=False,
        )
    for note in c.notes:
        console.print(f"note: {note}", highlight=False, markup=False)

"""`llm-energy simulate`: a trace (or a synthetic day) served by a simulated cluster under a policy."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli.app import JsonOption, _guard, app, console, err_console, esc, fold
from llm_energy.errors import ConfigError


@app.command()
def simulate(
    trace: Annotated[str, typer.Option(help="bundled trace or trace file (lengths and arrival times)")] = (
        "azure-conv"
    ),
    profile: Annotated[
        str | None, typer.Option(help="bundled profile or profile file (default: the package's default)")
    ] = None,
    gpus: Annotated[int, typer.Option(help="GPUs in the simulated cluster")] = 8,
    policy: Annotated[str, typer.Option(help="single | per-class | dynamic | a JSON plan file")] = "single",
    time_scale: Annotated[float, typer.Option(help="arrivals this many times faster")] = 1.0,
    day: Annotated[
        str | None, typer.Option(help="synthetic day from the trace: conversation | coding | a curve file")
    ] = None,
    window: Annotated[str | None, typer.Option(help="START,DURATION in trace seconds, e.g. 0,60")] = None,
    slo: Annotated[str, typer.Option(help="e.g. ttft=2s,tpot=100ms,e2e=30s")] = "ttft=2s,tpot=100ms",
    max_num_seqs: Annotated[
        int | None, typer.Option(help="sequences per instance (default: the profile's)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the synthetic day")] = 0,
    parked_power_w: Annotated[
        float, typer.Option(help="power of a GPU no instance holds, W (0: released/powered down)")
    ] = 0.0,
    carbon_intensity: Annotated[
        str | None, typer.Option(help="grid intensity: gCO2/kWh or a region (e.g. germany, world)")
    ] = None,
    price: Annotated[float | None, typer.Option(help="electricity price per kWh")] = None,
    records_out: Annotated[
        Path | None, typer.Option("--records", help="write per-request records (CSV, as replay --records)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Simulate a cluster serving a trace (SimPy, every forward pass from the profile's physical model).

    Continuous batching with chunked prefill, KV-cache admission and preemption, idle power between
    work; pools and their control from --policy. Reports replay's latency/SLO summary and steady-state
    J/request, plus total/idle/dynamic energy, GPU-hours, carbon and cost. All figures are simulated
    (clock effects modelled, TP > 1 assumed, --day synthetic: the labels say which apply).
    """
    from llm_energy.simulate import simulate as run_simulation

    cfg = _guard(
        lambda: _config(
            trace=trace, profile=profile, gpus=gpus, policy=policy, time_scale=time_scale, day=day,
            window=window, slo=slo, max_num_seqs=max_num_seqs, seed=seed, parked_power_w=parked_power_w,
            carbon_intensity=carbon_intensity, price=price, records_out=records_out,
        )
    )  # fmt: skip
    with _progress(enabled=not as_json) as on_progress:
        result = _guard(lambda: run_simulation(cfg, on_progress))
    if records_out is not None:
        _guard(lambda: _write_records(records_out, result))
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    else:
        _render(result)


def _config(**opts: Any) -> Any:
    """Check every input (before the progress bar starts) and build the `SimConfig`.

    Raises:
        ConfigError: the first bad input, named.
    """
    from llm_energy.carbon import check_price, parse_carbon_intensity
    from llm_energy.modeling.profile import DEFAULT_PROFILE, load_profile
    from llm_energy.simulate import SimConfig, day_curve, make_policy
    from llm_energy.workloads.slo import parse_slo

    profile = opts["profile"] or DEFAULT_PROFILE
    load_profile(profile)
    make_policy(opts["policy"])
    if opts["day"] is not None:
        day_curve(opts["day"])
    parse_carbon_intensity(opts["carbon_intensity"])
    check_price(opts["price"])
    records_out = opts["records_out"]
    if records_out is not None and not records_out.parent.is_dir():
        raise ConfigError(f"--records {records_out}: no such directory {records_out.parent}")
    return SimConfig(
        trace=opts["trace"], profile=profile, gpus=opts["gpus"], policy=opts["policy"],
        time_scale=opts["time_scale"], day=opts["day"], window=_window(opts["window"]),
        slo_s=parse_slo(opts["slo"]), max_num_seqs=opts["max_num_seqs"], seed=opts["seed"],
        carbon_intensity=opts["carbon_intensity"], price_per_kwh=opts["price"],
        parked_power_w=opts["parked_power_w"],
    )  # fmt: skip


def _window(spec: str | None) -> tuple[float, float] | None:
    if spec is None:
        return None
    try:
        start, dur = (float(x) for x in spec.split(","))
    except ValueError:
        raise ConfigError(f"--window must be START,DURATION in seconds, got {spec!r}") from None
    return start, dur


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr (requests finished); None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("simulate"),
        BarColumn(),
        TextColumn("{task.completed:.0f} done"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("simulate", total=None)
        state = {"last": 0}

        def update(total: int, done: int) -> None:
            if done - state["last"] >= 1000 or done == total:
                state["last"] = done
                progress.update(task, total=total, completed=done)

        yield update


def _write_records(path: Path, result: Any) -> None:
    import pandas as pd

    from llm_energy.simulate import records_of

    rows = []
    for r in records_of(result.table):
        row = dict(r.__dict__)
        row["token_times_s"] = ""
        rows.append(row)
    try:
        pd.DataFrame(rows).to_csv(path, index=False)
    except OSError as exc:
        raise ConfigError(f"--records {path}: {exc.strerror or exc}") from None


def _render(result: Any) -> None:
    s, e, t = result.summary, result.energy, result.totals
    table = fold(
        Table(
            title=esc(f"simulated: {result.config['policy']} on {result.config['gpus']} GPUs"),
            show_header=False,
        )
    )
    table.add_row("labels", esc("; ".join(result.labels)))
    table.add_row("plan", esc(" · ".join(result.plan)))
    table.add_row(
        "requests", f"{s.requests:,} ({s.ok:,} ok, {s.failed:,} failed), {result.preemptions:,} preemptions"
    )
    for name in ("ttft", "tpot", "e2e"):
        lat = getattr(s, name)
        if lat is not None:
            table.add_row(
                name,
                f"p50 {lat.p50_s * 1e3:,.1f} ms · p90 {lat.p90_s * 1e3:,.1f} ms · "
                f"p99 {lat.p99_s * 1e3:,.1f} ms",
            )
    if s.slo_attainment_pct is not None:
        table.add_row("SLO", f"{s.slo_attainment_pct:.1f}% attained, goodput {s.goodput_per_s:.2f} req/s")
    table.add_row(
        "steady state",
        f"{e.energy_per_request_j:,.1f} J/request, {e.energy_per_output_token_j:.4f} J/token "
        f"over {e.duration_s:,.0f} s",
    )
    table.add_row(
        "energy",
        f"{t.kwh:,.3f} kWh total: idle {t.idle_j / 3.6e6:,.3f}, dynamic {t.dynamic_j / 3.6e6:,.3f}, "
        f"parked {t.parked_j / 3.6e6:,.3f} kWh",
    )
    table.add_row(
        "per request", f"{t.j_per_request:,.1f} J over {t.span_s:,.0f} s; {t.gpu_hours:,.2f} GPU-hours"
    )
    if t.co2_kg is not None:
        table.add_row("carbon", f"{t.co2_kg:,.3f} kgCO2")
    if t.cost is not None:
        table.add_row("cost", f"{t.cost:,.3f}")
    if result.reconfigurations:
        table.add_row(
            "reconfigurations", esc(", ".join(f"{k} {v}" for k, v in sorted(result.reconfigurations.items())))
        )
    for note in result.notes:
        table.add_row("note", esc(note))
    table.add_row("simulated in", f"{result.wall_s:.1f} s")
    console.print(table)

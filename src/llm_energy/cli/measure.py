"""Commands that measure and inspect: measure, env, models, export."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli.app import (
    DbOption,
    JsonOption,
    _engine_options,
    _guard,
    _open_store,
    app,
    console,
    err_console,
    esc,
    fold,
)
from llm_energy.engines import ENGINES
from llm_energy.errors import ConfigError
from llm_energy.records import PHASES, RunResult

if TYPE_CHECKING:
    from llm_energy.sweep.spec import Point

AllowGpuSettingsOption = Annotated[
    bool,
    typer.Option(
        "--allow-gpu-settings",
        help="consent to change the GPU SM clock / power limit (restored after); never on a shared GPU",
    ),
]


_ENGINE_HELP = "engine: " + " | ".join(ENGINES)
_MODE_HELP = "engine mode (default: the engine's first); " + "; ".join(
    f"{name}: {' | '.join(cls.descriptor.modes)}" for name, cls in ENGINES.items()
)


@app.command()
def measure(
    model: Annotated[
        str, typer.Option(help="bundled architecture (see `models`) or local checkpoint dir")
    ] = "tiny",
    engine: Annotated[str, typer.Option(help=_ENGINE_HELP)] = "hf",
    mode: Annotated[str | None, typer.Option(help=_MODE_HELP)] = None,
    batch_size: Annotated[int, typer.Option(help="requests per batch")] = 1,
    input_len: Annotated[int, typer.Option(help="input tokens per request")] = 512,
    output_len: Annotated[int, typer.Option(help="output tokens per request (forced)")] = 128,
    repeats: Annotated[int, typer.Option(help="independent measurements, each stored")] = 1,
    device: Annotated[str, typer.Option(help="auto | cuda | cuda:N | cpu")] = "auto",
    dtype: Annotated[str, typer.Option(help="bfloat16 | float16 | float32 (CPU uses float32)")] = "bfloat16",
    init: Annotated[
        str | None, typer.Option(help="random weights: normal | uniform | zeros (default: the engine's)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for weights and inputs")] = 0,
    window_s: Annotated[float, typer.Option(help="repeat each phase until its window lasts this long")] = 2.0,
    idle_s: Annotated[float, typer.Option(help="seconds of idle power measured before loading")] = 2.0,
    no_total: Annotated[bool, typer.Option("--no-total", help="skip the whole-generation window")] = False,
    cpu_tdp_w: Annotated[float | None, typer.Option(help="CPU TDP for the estimate where no RAPL")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            help="engine option KEY=VALUE (repeatable; JSON values, e.g. max_num_seqs=64), "
            "checked like a sweep spec's engine entry"
        ),
    ] = None,
    decoding: Annotated[str | None, typer.Option(help="hf: greedy | sample | top-p | top-k | beam")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus probability (top-p)")] = None,
    top_k: Annotated[int | None, typer.Option(help="top-k")] = None,
    num_beams: Annotated[int | None, typer.Option(help="beams (beam search)")] = None,
    draft_model: Annotated[
        str | None, typer.Option(help="speculative decoding (engine hf-spec): draft architecture or dir")
    ] = None,
    lookahead: Annotated[int | None, typer.Option(help="speculative: draft tokens γ per round")] = None,
    spec_agree: Annotated[
        bool, typer.Option("--spec-agree", help="speculative: zero both final norms (draft and target agree)")
    ] = False,
    gpu_clock_mhz: Annotated[
        int | None, typer.Option(help="lock the SM clock (MHz) for the run; needs --allow-gpu-settings")
    ] = None,
    power_limit_w: Annotated[
        float | None, typer.Option(help="set the GPU power limit (W) for the run; needs --allow-gpu-settings")
    ] = None,
    allow_gpu_settings: AllowGpuSettingsOption = False,
    tp: Annotated[int, typer.Option("--tp", help="tensor-parallel size: GPUs of one model copy (hf)")] = 1,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure one configuration: prefill, decode and total energy with uncertainty; store it."""
    _guard(_recover_gpu_settings)
    named = {
        "decoding": decoding,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "num_beams": num_beams,
        "draft_model": draft_model,
        "lookahead": lookahead,
        "spec_agree": spec_agree or None,
    }
    if draft_model is not None and engine == "hf":
        engine = "hf-spec"  # speculative decoding is the hf loop with a draft (engines/hf_speculative.py)
    fields: dict[str, Any] = {
        "model": model,
        "engine": engine,
        "mode": mode,
        "batch_size": batch_size,
        "input_len": input_len,
        "output_len": output_len,
        "dtype": dtype,
        "init": init,
        "seed": seed,
        "device": device,
        "tp_size": tp,
        **{
            k: v
            for k, v in (("gpu_clock_mhz", gpu_clock_mhz), ("power_limit_w", power_limit_w))
            if v is not None
        },
    }
    runs = _MeasureRun(
        window_s=window_s,
        idle_s=idle_s,
        repeats=repeats,
        measure_total=not no_total,
        cpu_tdp_w=cpu_tdp_w,
        allow_gpu_settings=allow_gpu_settings,
    )
    point = _guard(lambda: runs.check(fields, named, option))
    results, db_path = _guard(lambda: runs.run(point, db, quiet=as_json))
    if as_json:
        sys.stdout.write(json.dumps([run_to_json(r) for r in results], indent=2, default=str) + "\n")
    else:
        render_runs(results, db_path)
    if any(r.status != "ok" for r in results):
        raise typer.Exit(1)


@dataclass(frozen=True)
class _MeasureRun:
    """How `measure` measures its point; `check` refuses bad input before any hardware is touched."""

    window_s: float
    idle_s: float
    repeats: int
    measure_total: bool
    cpu_tdp_w: float | None
    allow_gpu_settings: bool

    def check(self, fields: dict[str, Any], named: dict[str, Any], option: list[str] | None) -> Point:
        """Validate every input and return the point (ConfigError, exit 2, on the first bad one)."""
        from llm_energy.engines import check_installed, engine_descriptor
        from llm_energy.meters.tdp import tdp_setting_w
        from llm_energy.sweep.spec import SHARED_GPU_NOTE, check_seconds, make_point

        if self.repeats < 1:
            raise ConfigError(f"--repeats must be >= 1 (got {self.repeats})")
        check_seconds("--window-s", self.window_s)
        check_seconds("--idle-s", self.idle_s, allow_zero=True)
        tdp_setting_w(self.cpu_tdp_w)  # also checks LLM_ENERGY_CPU_TDP_W
        if ("gpu_clock_mhz" in fields or "power_limit_w" in fields) and not self.allow_gpu_settings:
            raise ConfigError(
                "--gpu-clock-mhz / --power-limit-w change the GPU's settings and need --allow-gpu-settings; "
                f"{SHARED_GPU_NOTE}"
            )
        if (named["lookahead"] is not None or named["spec_agree"]) and named["draft_model"] is None:
            raise ConfigError("--lookahead and --spec-agree need --draft-model (speculative decoding)")
        options = _engine_options(option)
        for key, value in named.items():
            if value is None:
                continue
            if key in options:
                raise ConfigError(
                    f"--option {key}=... and --{key.replace('_', '-')} both set {key}: give one"
                )
            options[key] = value
        point = make_point(**fields, options=options)  # names, lengths, options: all before any hardware
        check_installed(point.engine)
        if not engine_descriptor(point.engine).simulated:
            from llm_energy.engines.devices import resolve_device

            resolve_device(point.device)  # a CUDA device torch does not see is refused here
        return point

    def run(self, point: Point, db: Path | None, *, quiet: bool) -> tuple[list[RunResult], Path]:
        """Measure `point` (its GPU settings checked first) and store every run."""
        from llm_energy.sweep.runner import RunOptions
        from llm_energy.sweep.worker import GroupWorker, measure_one, validate_points_gpu_settings

        if point.changes_gpu_settings:  # check the values against the GPU, changing nothing
            target = "cuda" if point.device == "auto" else point.device
            validate_points_gpu_settings([point.model_copy(update={"device": target})], allow=True)
        options = RunOptions(
            target_window_s=self.window_s,
            measure_total=self.measure_total,
            repeats=self.repeats,
            allow_gpu_settings=self.allow_gpu_settings,
        )
        with _open_store(db) as store:  # a locked or foreign database fails now, before GPU time
            status = None if quiet else err_console.status("starting")
            worker = GroupWorker(
                point,
                options,
                idle_s=self.idle_s,
                cpu_tdp_w=self.cpu_tdp_w,
                on_status=(lambda msg: status.update(esc(msg))) if status else None,
            )
            try:
                if status:
                    status.start()
                results = measure_one(worker, point)
            finally:
                if status:
                    status.stop()
            for result in results:
                store.write_run(result)
        return results, store.path


def _recover_gpu_settings() -> None:
    """Put back GPU settings a crashed earlier run left changed (opens no GPU without a restore file)."""
    from llm_energy.sweep.worker import recover_gpu_settings

    if recover_gpu_settings():
        err_console.print("[yellow]restored GPU settings left changed by an earlier run that died[/]")


def _primary_prefix(result: RunResult) -> str:
    """GPU energy where GPUs were measured, else the CPU/DRAM domains."""
    for phase in result.phases.values():
        if phase.measurement.domains("gpu:"):
            return "gpu:"
    return ""


def phase_summary(result: RunResult, phase: str) -> dict[str, Any]:
    """Return per-repetition figures of one phase for display and JSON."""
    p = result.phases[phase]  # type: ignore[index]
    m = p.measurement
    prefix = _primary_prefix(result)
    energy_j = m.energy_sum_j(prefix) / p.repetitions
    sources = sorted({m.source[d] for d in m.domains(prefix)})
    return {
        "duration_s": p.duration_s,
        "energy_j": energy_j,
        "uncertainty_j": m.uncertainty_sum_j(prefix) / p.repetitions,
        "tokens": p.tokens,
        "energy_per_token_j": energy_j / p.tokens if p.tokens else None,
        "mean_power_w": m.mean_power_w(prefix),
        "tokens_per_s": p.tokens_per_s if p.tokens else None,
        "repetitions": p.repetitions,
        "window_s": m.duration_s,
        "domains": m.domains(prefix),
        "source": ",".join(sources),
        "cpu_energy_j": m.energy_sum_j("cpu:") / p.repetitions if prefix == "gpu:" else None,
        "flags": list(m.flags),
    }


def run_to_json(result: RunResult) -> dict[str, Any]:
    """Return a JSON-ready summary of a run."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "error": result.error,
        "config": dict(result.config),
        "compile_s": result.compile_s,
        "load_s": result.load_s,
        "gpu": result.env.get("gpu_name"),
        "phases": {ph: phase_summary(result, ph) for ph in PHASES if ph in result.phases},
    }


def _mean_spread(values: Sequence[float]) -> tuple[float, float]:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return float("nan"), 0.0
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def render_runs(results: Sequence[RunResult], db_path: Path) -> None:
    """Print a rich table of the (repeated) measurement, mean over repeats."""
    ok = [r for r in results if r.status == "ok"]
    for bad in (r for r in results if r.status != "ok"):
        err_console.print(f"[bold red]{esc(bad.status)}:[/] {esc(bad.error)}")
    if not ok:
        return
    first = ok[0]
    cfg = first.config
    device = cfg.get("engine_facts", {}).get("device", cfg["device"])
    title = (
        f"{cfg['model']} · {cfg['engine']} {cfg.get('mode')} · batch {cfg['batch_size']} · "
        f"in {cfg['input_len']} / out {cfg['output_len']} · {device} · {len(ok)} run(s)"
    )
    table = Table(title=esc(title))
    for col in (
        "phase",
        "time/rep",
        "energy/rep (J)",
        "J/token",
        "avg power (W)",
        "tokens/s",
        "reps",
        "source",
    ):
        table.add_column(col, justify="right" if col not in ("phase", "source") else "left")
    estimated = False
    for phase in PHASES:
        if phase not in first.phases:
            continue
        rows = [phase_summary(r, phase) for r in ok]
        e_mean, e_std = _mean_spread([row["energy_j"] for row in rows])
        unc = max(statistics.fmean(row["uncertainty_j"] for row in rows), e_std)
        d_mean, _ = _mean_spread([row["duration_s"] for row in rows])
        jpt = _mean_spread([row["energy_per_token_j"] for row in rows])[0] if rows[0]["tokens"] else None
        tps = _mean_spread([row["tokens_per_s"] for row in rows])[0] if rows[0]["tokens"] else None
        source = rows[0]["source"]
        estimated = estimated or "estimated" in source
        table.add_row(
            phase,
            f"{d_mean * 1e3:,.1f} ms",
            f"{e_mean:,.2f} ± {unc:,.2f}",
            "-" if jpt is None else f"{jpt:.4g}",
            f"{_mean_spread([row['mean_power_w'] for row in rows])[0]:,.0f}",
            "-" if tps is None else f"{tps:,.0f}",
            str(rows[0]["repetitions"]),
            source or "-",
        )
    console.print(fold(table))
    console.print(
        f"compile/warm-up {first.compile_s:.1f} s (excluded) · load {first.load_s:.1f} s · "
        f"stored in {esc(db_path)} as {', '.join(r.run_id[:8] for r in ok)}"
    )
    if estimated:
        console.print(
            "[bold yellow]Energy is ESTIMATED[/] (CPU TDP x utilisation: no GPU and no readable RAPL "
            "counter here); it is labelled `estimated` in the store. Run on a GPU for measured energy."
        )
    flags = sorted({f for r in ok for p in r.phases.values() for f in p.measurement.flags})
    if flags:
        console.print(f"flags: {esc(', '.join(flags))}")


@app.command()
def env(as_json: JsonOption = False) -> None:
    """Show what the meters can see: GPUs, energy counters, update period, CPU/DRAM sensors."""
    from llm_energy.env import collect_env
    from llm_energy.meters import detect_devices

    def run() -> dict[str, Any]:
        found = detect_devices()
        return collect_env(found.gpus, found.cpus, found.notes)

    info = _guard(run)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    table = Table(title="llm-energy environment", show_header=False)
    for key in (
        "host",
        "platform",
        "python",
        "cpu_model",
        "cpu_count",
        "gpu_count",
        "gpu_name",
        "driver",
        "power_limit_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
    ):
        table.add_row(key, esc(info.get(key)))
    for gpu in info["gpus"]:
        table.add_row("gpu update period", f"{gpu.get('update_period_s', 0) * 1e3:.0f} ms")
    table.add_row("cpu meters", esc("; ".join(info["cpu_meters"])))
    table.add_row("versions", esc(", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)))
    console.print(fold(table))
    for note in info["notes"]:
        console.print(f"[yellow]note:[/] {esc(note)}")


@app.command()
def models(as_json: JsonOption = False) -> None:
    """List the bundled model architectures with parameter counts."""
    from llm_energy.architectures import architecture_names, load_architecture, param_count, weight_bytes

    rows: list[dict[str, Any]] = []
    for name in architecture_names():
        arch = load_architecture(name)
        rows.append(
            {
                "name": name,
                "model_type": arch.model_type,
                "params": param_count(arch),
                "layers": arch.num_layers,
                "hidden": arch.hidden_size,
                "context": arch.max_context_tokens,
                "bf16_weights_gb": weight_bytes(arch) / 1e9,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="bundled architectures (random weights; or pass a local checkpoint dir)")
    for col in ("name", "type", "params", "layers", "hidden", "context", "bf16 GB"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            esc(r["name"]),
            esc(r["model_type"]),
            f"{r['params'] / 1e9:.3f} B",
            str(r["layers"]),
            str(r["hidden"]),
            str(r["context"]),
            f"{r['bf16_weights_gb']:.2f}",
        )
    console.print(fold(table))


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="output file: .csv or .parquet")],
    db: DbOption = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status (ok | oom | error)")] = None,
) -> None:
    """Export stored runs (one row per run) to CSV or Parquet."""
    from llm_energy.store import export_runs

    def run() -> int:
        with _open_store(db) as store:
            return int(export_runs(store, out, status=status))

    n = _guard(run)
    console.print(f"wrote {n} runs to {esc(out)}")

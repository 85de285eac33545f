"""`recommend --scorer simulate`: every candidate served the trace's real arrivals in the simulator."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llm_energy.cli.app import _guard, console, err_console, esc, fold
from llm_energy.errors import ConfigError


def parse_window(spec: str | None) -> tuple[float, float] | None:
    """`START,DURATION` in the trace's own seconds (e.g. 0,600; as `replay --window`), or None for all of it.

    Raises:
        ConfigError: not two numbers, or a negative start / non-positive duration.
    """
    if spec is None:
        return None
    try:
        start, duration = (float(x) for x in spec.split(","))
    except ValueError:
        raise ConfigError(f"bad --window {spec!r}: expected START,DURATION in seconds, e.g. 0,600") from None
    if not (start >= 0 and duration > 0):
        raise ConfigError(f"bad --window {spec!r}: start must be ≥ 0 and duration > 0")
    return start, duration


def run_simulated_recommend(
    trace: str, names: list[str], slo_s: dict[str, float], *, gpus: int, window: str | None,
    clocks: list[float] | None, as_json: bool, validate_online: bool = False,
) -> bool:  # fmt: skip
    """Score, print (or write JSON) and return whether a configuration meets the SLO."""
    from llm_energy.modeling.profile import load_profile
    from llm_energy.recommend.simulated import recommend_by_simulation

    def run() -> Any:
        profiles = {n: load_profile(n) for n in names}
        with Progress(
            TextColumn("[bold]simulating candidates"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True, disable=as_json,
        ) as bar:  # fmt: skip
            task = bar.add_task("", total=None)
            return recommend_by_simulation(
                trace, profiles, gpus=gpus, slo_s=slo_s, window=parse_window(window), clocks_mhz=clocks or (),
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip

    rec = _guard(run)
    checks = _guard(lambda: _online(rec, trace, slo_s, names)) if validate_online and rec.choice else []
    if as_json:
        payload = rec.to_dict() | (_online_payload(checks) if validate_online else {})
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        _render(rec, trace)
        if checks:
            _render_checks(checks)
    if rec.choice is None:
        err_console.print(f"no simulated configuration meets the SLO on {esc(trace)}", highlight=False)
    return rec.choice is not None


def _render(rec: Any, trace: str) -> None:
    win = "whole trace" if rec.window is None else f"window {rec.window[0]:g}+{rec.window[1]:g} s"
    t = Table(title=esc(f"recommendation by simulation: {trace}, {win} (simulated, modelled)"))
    for col in ("role", "configuration", "J/request", "p90 TTFT ms", "p90 TPOT ms", "SLO %", "GPU-h"):
        t.add_column(col, justify="right" if col not in ("role", "configuration") else "left")
    rows = [("choice", rec.choice), ("runner-up", rec.runner_up)] + [("frontier", c) for c in rec.frontier]
    for role, c in rows:
        if c is None:
            continue
        t.add_row(
            role, esc(c.label()), f"{c.energy_per_request_j:,.1f}", f"{c.ttft_p90_s * 1e3:,.0f}",
            f"{c.tpot_p90_s * 1e3:.1f}", f"{c.attainment_pct:.1f}", f"{c.gpu_hours:.2f}",
        )  # fmt: skip
    console.print(fold(t))
    console.print(f"{len(rec.candidates)} candidates simulated" + "".join(f"; {esc(s)}" for s in rec.skipped))


def _online(rec: Any, trace: str, slo_s: dict[str, float], names: list[str]) -> list[Any]:
    """Replay the choice and the runner-up through vLLM on this machine's GPUs, each in its profile's mode."""
    from llm_energy.meters import detect_gpus
    from llm_energy.recommend.online_check import check_online, vllm_servers

    launch = launch_settings(rec)
    gpus, _ = detect_gpus()
    if not gpus:
        raise ConfigError(
            "--validate-online replays through vLLM on this machine's GPUs, and there is none here"
        )
    return check_online(
        rec, trace, slo_s=slo_s, gpus=gpus, servers=vllm_servers(launch),
        on_status=lambda text: err_console.print(esc(text), highlight=False),
    )  # fmt: skip


def launch_settings(rec: Any) -> dict[str, Any]:
    """Profile name → `VllmLaunch` for the choice and the runner-up (their own model, mode and chunk).

    Raises:
        ConfigError: a profile that is not vLLM's (only vLLM is launched here).
    """
    from llm_energy.modeling.profile import load_profile
    from llm_energy.recommend.online_check import VllmLaunch

    out = {}
    for cand in (rec.choice, rec.runner_up):
        if cand is None or cand.profile in out:
            continue
        prof = load_profile(cand.profile)
        if prof.engine != "vllm":
            raise ConfigError(f"--validate-online launches vLLM; {cand.profile} is a {prof.engine} profile")
        out[cand.profile] = VllmLaunch(prof.model, prof.mode or "cudagraphs", _chunk_tokens(prof))
    return out


def _online_payload(checks: list[Any]) -> dict[str, Any]:
    from llm_energy.recommend.online_check import common_span, verdict

    return {
        "online": [c.to_dict() for c in checks],
        "online_common_span_j_per_request": common_span(checks),
        "online_verdict": verdict(checks),
    }


def _chunk_tokens(prof: Any) -> int | None:
    """The profile's chunked-prefill budget (what the simulation assumed); None without a physical fit."""
    return None if prof.physical is None else int(prof.physical.prefill_chunk_tokens)


def _render_checks(checks: list[Any]) -> None:
    from llm_energy.recommend.online_check import common_span, verdict

    span = common_span(checks)
    t = Table(title="measured online (same trace window) vs simulated")
    for col in (
        "role",
        "simulated J/req",
        "measured J/req, common span",
        "steady J/req",
        "p90 TTFT ms",
        "p90 TPOT ms",
        "SLO %",
    ):
        t.add_column(col, justify="right")

    def num(x: float | None, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    for c in checks:
        t.add_row(
            c.role, f"{c.candidate.energy_per_request_j:,.1f}", num(span.get(c.role), ",.1f"),
            num(c.measured_energy_per_request_j, ",.1f"),
            num(None if c.measured_ttft_p90_s is None else c.measured_ttft_p90_s * 1e3, ",.0f"),
            num(None if c.measured_tpot_p90_s is None else c.measured_tpot_p90_s * 1e3, ".1f"),
            num(c.measured_attainment_pct, ".1f"),
        )  # fmt: skip
    console.print(fold(t))
    held = verdict(checks)
    if held is not None:  # both roles were replayed and metered: both have a common-span figure
        missed = [c.role for c in checks if not c.meets_slo]
        console.print(
            f"on a common span the choice measured {span['choice']:,.1f} J/request, "
            f"the runner-up {span['runner-up']:,.1f}"
            + (f" ({' and '.join(missed)} missed the SLO)" if missed else "")
            + f": the recommendation {held}"
        )

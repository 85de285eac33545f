"""Text (rich tables) and JSON output of a recommendation and a per-class plan."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from llm_energy.carbon import Footprint, GridIntensity
from llm_energy.recommend import Recommendation
from llm_energy.recommend.classes import ClassPlan
from llm_energy.recommend.search import Candidate
from llm_energy.recommend.validation import RecommendationCheck


def _footprint(c: Candidate, rate_per_s: float, grid: GridIntensity | None, price: float | None) -> Footprint:
    return Footprint(c.energy_per_request_j, rate_per_s, grid.g_per_kwh if grid else None, price)


def recommendation_dict(
    rec: Recommendation, grid: GridIntensity | None = None, price_per_kwh: float | None = None
) -> dict[str, Any]:
    """JSON-ready recommendation: choice, baselines, fastest, savings with bounds, Pareto, footprints."""

    def cand(c: Candidate | None) -> dict[str, Any] | None:
        if c is None:
            return None
        return {**asdict(c), "footprint": _footprint(c, rec.rate_per_s, grid, price_per_kwh).to_dict()}

    baselines = []
    for b in rec.baselines:
        row: dict[str, Any] = {"label": b.label, **(cand(b.candidate) or {})}
        rng = rec.saving_range(b.candidate)
        if rec.choice is not None and rng is not None:
            row["saving"] = 1 - rec.choice.energy_per_request_j / b.candidate.energy_per_request_j
            row["saving_low"], row["saving_high"] = rng
            row["kwh_per_day_saved"] = rec.kwh_per_day_saved(b.candidate)
            row["kwh_per_day_saved_unc"] = rec.kwh_per_day_saved_unc(b.candidate)
        baselines.append(row)
    rng = rec.saving_range()
    return {
        "source": "modelled",
        "rate_per_s": rec.rate_per_s,
        "slo_s": rec.slo_s,
        "choice": cand(rec.choice),
        "closest": None if rec.choice else cand(rec.closest()),
        "baseline": baselines[0]["label"],
        "baselines": baselines,
        "fastest": cand(rec.fastest),
        "saving": rec.saving,
        "saving_low": None if rng is None else rng[0],
        "saving_high": None if rng is None else rng[1],
        "kwh_per_day_saved": rec.kwh_per_day_saved(),
        "kwh_per_day_saved_unc": rec.kwh_per_day_saved_unc(),
        "carbon": None if grid is None else {"g_per_kwh": grid.g_per_kwh, "source": grid.label},
        "price_per_kwh": price_per_kwh,
        "pareto": [asdict(c) for c in rec.pareto()],
        "candidates": len(rec.candidates),
        "notes": rec.notes,
    }


def _row(table: Table, label: str, c: Candidate) -> None:
    table.add_row(
        label,
        c.label(),
        f"{c.energy_per_request_j:.1f} ± {c.uncertainty_per_request_j:.1f}",
        f"{c.ttft_s * 1e3:,.0f}",
        f"{c.tpot_s * 1e3:,.1f}",
        f"{c.throughput_per_s:,.1f}",
        "yes" if c.meets_slo else "no",
        "yes" if c.keeps_up and c.fits_memory else ("no (memory)" if not c.fits_memory else "no"),
    )


def print_recommendation(
    console: Console,
    rec: Recommendation,
    title: str,
    grid: GridIntensity | None = None,
    price_per_kwh: float | None = None,
) -> None:
    """Print the recommendation: a table of choice / baselines / fastest / Pareto, savings, footprint."""
    table = Table(title=title)
    for col in ("", "configuration", "J/request", "TTFT ms", "TPOT ms", "req/s capacity", "SLO", "keeps up"):
        table.add_column(col)
    if rec.choice is not None:
        _row(table, "choice", rec.choice)
    for b in rec.baselines:
        _row(table, "baseline", b.candidate)
    _row(table, "fastest", rec.fastest)
    for c in rec.pareto():
        _row(table, "pareto", c)
    console.print(table)
    for i, b in enumerate(rec.baselines):
        console.print(f"baseline {i + 1}: {b.label}")
    if rec.choice is None:
        return
    for b in rec.baselines:
        rng = rec.saving_range(b.candidate)
        saved, unc = rec.kwh_per_day_saved(b.candidate), rec.kwh_per_day_saved_unc(b.candidate)
        assert rng is not None and saved is not None and unc is not None
        saving = 1 - rec.choice.energy_per_request_j / b.candidate.energy_per_request_j
        console.print(
            f"saving vs {b.candidate.label()}: {saving:.1%} of energy per request "
            f"(bounds {rng[0]:.1%} to {rng[1]:.1%}), {saved:.2f} ± {unc:.2f} kWh/day "
            f"at {rec.rate_per_s:.2f} req/s"
        )
    for c, what in ((rec.choice, "choice"), (rec.baseline, "baseline 1")):
        lines = _footprint(c, rec.rate_per_s, grid, price_per_kwh).lines()
        console.print(f"{what}: " + "; ".join(lines) + " (GPU energy only)")
    if grid is not None:
        console.print(f"carbon intensity {grid.g_per_kwh:g} gCO2/kWh: {grid.label}")
    for note in rec.notes:
        console.print(f"[dim]note: {note}[/dim]")


def print_class_plan(console: Console, plan: ClassPlan) -> None:
    """Print the per-class plan and its saving over the best single configuration."""
    console.print(plan.split.describe())
    table = Table(title="per-class plan (modelled)")
    for col in ("class", "requests", "req/s", "SLO", "configuration", "J/request", "TTFT ms", "TPOT ms"):
        table.add_column(col)
    for c in plan.classes:
        slo = ",".join(f"{m}={v * 1e3:g}ms" for m, v in c.slo_s.items())
        ch = c.recommendation.choice
        if ch is None:
            near = c.recommendation.closest()
            table.add_row(
                c.name,
                f"{c.requests:,}",
                f"{c.rate_per_s:.3g}",
                slo,
                f"none meets; closest {near.label()}",
                "",
                "",
                "",
            )
            continue
        table.add_row(
            c.name,
            f"{c.requests:,}",
            f"{c.rate_per_s:.3g}",
            slo,
            ch.label(),
            f"{ch.energy_per_request_j:.1f} ± {ch.uncertainty_per_request_j:.1f}",
            f"{ch.ttft_s * 1e3:,.0f}",
            f"{ch.tpot_s * 1e3:,.1f}",
        )
    console.print(table)
    requests = sum(c.requests for c in plan.classes)
    if plan.single_label is None or plan.single_j is None:
        console.print("no single configuration meets every class's SLO")
    else:
        console.print(
            f"best single configuration: {plan.single_label}, {plan.single_j / requests:.1f} J/request"
        )
    s = plan.saving()
    if s is not None and plan.plan_j is not None:
        console.print(
            f"per-class plan: {plan.plan_j / requests:.1f} J/request on {plan.plan_gpus} GPU(s); "
            f"saving over the single best {s[0]:.1%} (bounds {s[1]:.1%} to {s[2]:.1%})"
        )
        console.print(
            "[dim]note: the plan serves each class from its own pool, each at its class's load "
            "(concurrency, idle time: modelled)[/dim]"
        )


def print_validation(console: Console, check: RecommendationCheck) -> None:
    """Print the measured chosen vs baseline: J/request, model error, latency, SLO attainment, saving."""
    table = Table(
        title=f"measured on {check.sample.trace}: {check.chosen.run.requests} requests, same sample"
    )
    for col in (
        "",
        "configuration",
        "measured J/request",
        "modelled J/request",
        "model error",
        "padded model",
        "TTFT p50/p90 ms",
        "TPOT p50 ms",
        "SLO met",
    ):
        table.add_column(col)
    for m in (check.chosen, check.baseline):
        lat = m.latency_summary()
        slo = m.slo_attainment
        table.add_row(
            m.role,
            f"{m.config.profile} {m.run.engine} {m.run.mode} batch {m.run.batch_size} ({m.run.batching})",
            f"{m.measured_j_per_request:.1f} ± {m.measured_unc_j_per_request:.1f}",
            f"{m.modelled_j_per_request:.1f} ± {m.modelled_unc_j_per_request:.1f}",
            f"{m.model_error:+.1%}",
            "—" if m.padded_j_per_request is None else f"{m.padded_j_per_request:.1f}",
            "not measured"
            if lat is None
            else f"{lat['ttft_p50_s'] * 1e3:,.0f}/{lat['ttft_p90_s'] * 1e3:,.0f}",
            "not measured" if lat is None else f"{lat['tpot_p50_s'] * 1e3:,.1f}",
            "not measured" if slo is None else f"{slo['all']:.0%}",
        )
    console.print(table)
    s, lo, hi = check.measured_saving
    ms, mlo, mhi = check.modelled_saving
    console.print(
        f"measured saving: {s:.1%} (bounds {lo:.1%} to {hi:.1%}); modelled on the same requests and "
        f"batches: {ms:.1%} (bounds {mlo:.1%} to {mhi:.1%})"
        + (
            f"; recommendation on the whole trace: {check.modelled_saving_trace:.1%}"
            if check.modelled_saving_trace is not None
            else ""
        )
    )
    for m in (check.chosen, check.baseline):
        console.print(f"[dim]{m.role} latency: {m.run.latency_note}[/dim]")
    for note in check.notes:
        console.print(f"[dim]note: {note}[/dim]")

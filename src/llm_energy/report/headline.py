"""The report's opening: the few numbers a reader came for, before any figure or table.

What was measured and where; the lowest and highest energy per output token measured (the spread an
engine, mode and batch size make) and each engine's lowest; the trace estimate with its uncertainty;
the recommendation and its saving. Every figure is labelled measured, estimated or modelled, and
every value from the data is escaped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from llm_energy.report._html_parts import _distinct, _e, _num, _percent, _pm

if TYPE_CHECKING:
    import pandas as pd

    from llm_energy.estimate import Estimate
    from llm_energy.report.recommendation_section import RecommendationView


def headline_section(
    frame: pd.DataFrame,
    summary: pd.DataFrame | None,
    estimate: Estimate | None,
    recommendation: RecommendationView | None,
) -> str:
    """The "Headline" section (HTML): a short list of the report's main results, each one line."""
    items = [_where(frame, summary), *_measured(summary)]
    if estimate is not None:
        items.append(_estimate(estimate))
    if recommendation is not None:
        items.append(_recommendation(recommendation))
    return '<h2>Headline</h2><ul class="headline">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _label(r: Any) -> str:
    """`model engine mode, batch B, input/output L_in/L_out` of a summary row (a Series), escaped."""
    return _e(
        f"{r['model']} {r['engine']} {r['mode']}, batch {r['batch_size']}, "
        f"input/output {r['input_len']}/{r['output_len']}"
    )


def _where(frame: pd.DataFrame, summary: pd.DataFrame | None) -> str:
    if summary is None or summary.empty:
        return "No runs measured."
    gpus = _distinct(frame["env_gpu_name"]) if "env_gpu_name" in frame.columns else []
    where = f"on {', '.join(_e(g) for g in gpus)}" if gpus else "with no GPU named in the runs"
    return f"{_num(len(summary))} configurations, {_num(len(frame))} runs, measured {where}."


def _measured(summary: pd.DataFrame | None) -> list[str]:
    """Lowest and highest measured J per output token, and each engine's lowest."""
    if summary is None or summary.empty:
        return []
    ok = summary[summary["j_per_token"].map(lambda v: math.isfinite(float(v)) and float(v) > 0)]
    if ok.empty:
        return ["No configuration has measured GPU energy (see Method)."]
    low = ok.loc[ok["j_per_token"].idxmin()]
    high = ok.loc[ok["j_per_token"].idxmax()]
    items = [
        f"Lowest measured GPU energy: <strong>{_pm(low['j_per_token'], low['j_per_token_unc'])} J per output "
        f"token</strong> ({_label(low)}); highest {_num(high['j_per_token'])} J ({_label(high)}): "
        f"{_num(high['j_per_token'] / low['j_per_token'])}× apart."
    ]
    engines = ok.groupby("engine", sort=True)
    if engines.ngroups > 1:
        best = [group.loc[group["j_per_token"].idxmin()] for _, group in engines]
        items.append(
            "Lowest per engine: "
            + "; ".join(f"{_e(b['engine'])} {_num(b['j_per_token'])} J/token ({_label(b)})" for b in best)
            + "."
        )
    return items


def _estimate(est: Estimate) -> str:
    rel = est.uncertainty_j / est.total_j if est.total_j else math.nan
    outside = (
        f"; {_percent(est.outside_energy_share)} of the energy lies outside the calibrated range"
        if est.outside_calibration
        else ""
    )
    return (
        f"Trace estimate (modelled from profile {_e(est.profile)}): <strong>{_num(est.total_kwh)} kWh "
        f"± {_percent(rel)}</strong> of GPU energy for {_num(est.requests)} requests, "
        f"{_num(est.request_mean_j)} J per request, {_num(est.j_per_output_token)} J per output token, "
        f"{_percent(est.prefill_share)} of it prefill{outside}."
    )


def _recommendation(view: RecommendationView) -> str:
    rec = view.recommendation
    slo = f"<code>{_e(view.slo)}</code> on {_e(view.trace)}"
    if rec.choice is None:
        closest = _e(rec.closest().label())
        return f"Recommendation (modelled): no configuration meets {slo}; the closest is {closest}."
    c = rec.choice
    text = (
        f"Recommendation (modelled) for {slo}: <strong>{_e(c.label())}</strong>, "
        f"{_pm(c.energy_per_request_j, c.uncertainty_per_request_j)} J per request"
    )
    if rec.baselines:
        base = rec.baselines[0]
        saving = 1 - c.energy_per_request_j / base.candidate.energy_per_request_j
        text += f", {_percent(saving)} less than {_e(base.label)}"
    return text + "."

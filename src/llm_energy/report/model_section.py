"""The report's "Trace estimate" and "Energy model" sections: what the model says, and how far to trust it.

The estimate section states the method (`physical` by default: every request costed by the profile's
physical model; `binned` / `p1`: the calibration grid through length bins), the totals with their 1-σ,
how much of the energy lies outside the calibrated range, and the per-class error bars (input-length
classes, `estimate.CLASS_NAMES`). The energy-model section states what the model was fitted on and how
well it predicts: the physical model's leave-one-out error over every calibration point (each point
predicted by the model fitted on all the others), how fast its error grows per octave outside the
calibrated range, the range itself, the engine limits it runs at (KV capacity, max_num_seqs, idle
power, each with its source) and the share of the trace estimate's energy outside that range.

Every value from a profile or an estimate is escaped (`_html_parts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from llm_energy.report._html_parts import (
    _e,
    _kv_table,
    _list,
    _num,
    _percent,
    _pm,
    _rows_table,
    _td,
    _td_safe,
    _text,
)

if TYPE_CHECKING:
    from llm_energy.estimate import Estimate
    from llm_energy.modeling.profile import EnergyProfile

_METHODS: Final = {
    "physical": (
        "Each request is run, in the estimate, in a batch of equal requests (at the largest batch the "
        "engine holds at its lengths, KV capacity and max_num_seqs, unless a batch is given) and costed by "
        "the profile's physical model: roofline-structured prefill and decode terms fitted to every "
        "calibration point. Its 1-σ uncertainty is the model's leave-one-out error ⊕ the meter's, growing "
        "per octave outside the calibrated range (see Energy model), summed over requests (fully "
        "correlated)."
    ),
    "binned": (
        "The trace's requests are binned by length and each bin is run, in the estimate, in homogeneous "
        "batches from the calibration grid (per-token energy interpolated between measured points, held "
        "at the grid's edges); the uncertainty sums the grid's relative bounds over bins (worst case), "
        "widened outside the grid."
    ),
}
_METHODS["p1"] = _METHODS["binned"].replace("by length", "by the seed study's power-of-two rule")

_KNOWN_QUALITY: Final = frozenset(
    {"loo_energy", "loo_time", "loo_energy_errors", "extrapolation", "limits", "energy_source", "physical"}
)
"""`fit_quality` keys the energy-model section states in words (the rest are listed as they are)."""


def estimate_section(estimate: Estimate) -> str:
    """The "Trace estimate" section (HTML, figures apart): method, totals, outside share, per class."""
    rel = estimate.uncertainty_j / estimate.total_j if estimate.total_j else math.nan
    dropped = (
        f", {_num(estimate.dropped)} dropped (beyond the {_e(estimate.method)} bins; the total scales "
        f"to every request as {_num(estimate.scaled_total_j)} J)"
        if estimate.dropped
        else ""
    )
    rows: list[tuple[str, str]] = [
        ("profile", _text(estimate.profile)),
        ("method", _text(estimate.method)),
        ("requests", f"{_num(estimate.requests)} estimated{dropped}"),
        ("outside the calibrated range", _outside(estimate)),
        ("tokens", f"{_num(estimate.input_tokens)} input, {_num(estimate.output_tokens)} output"),
        (
            "total GPU energy",
            f"{_num(estimate.total_kwh)} kWh = {_pm(estimate.total_j, estimate.uncertainty_j)} J "
            f"(± {_percent(rel)})",
        ),
        (
            "per output token",
            _pm(estimate.j_per_output_token, estimate.uncertainty_j / estimate.output_tokens) + " J"
            if estimate.output_tokens
            else "–",
        ),
        (
            "per request",
            f"mean {_num(estimate.request_mean_j)} J, median {_num(estimate.request_p50_j)} J, "
            f"90th percentile {_num(estimate.request_p90_j)} J",
        ),
        (
            "prefill / decode",
            f"{_num(estimate.prefill_j)} J / {_num(estimate.decode_j)} J "
            f"(prefill share {_percent(estimate.prefill_share)})",
        ),
        (
            "FLOPs baseline",
            f"{_num(estimate.flops_j)} J at peak, {_num(estimate.flops_half_util_j)} J at 50% utilisation; "
            f"estimate / peak-FLOPs = {_num(estimate.flops_ratio)}",
        ),
    ]
    if estimate.duration_s:
        rows.append(
            (
                "trace duration",
                f"{_num(estimate.duration_s)} s (mean {_num(estimate.total_j / estimate.duration_s)} W)",
            )
        )
    if estimate.co2_g is not None:
        source = f" ({_text(estimate.carbon_source)})" if estimate.carbon_source else ""
        rows.append(("CO₂", f"{_num(estimate.co2_g)} g at {_num(estimate.carbon_g_per_kwh)} g/kWh{source}"))
    if estimate.cost is not None:
        rows.append(("cost", f"{_num(estimate.cost)} at {_num(estimate.price_per_kwh)} per kWh"))
    if estimate.co2_g is not None or estimate.cost is not None:
        rows.append(("per 1,000 requests and per day", _text("; ".join(estimate.footprint().lines()))))
    method = _METHODS.get(
        estimate.method, f"Method {estimate.method}: see docs/methodology.md for how it costs a request."
    )
    return (
        f"<h2>Trace estimate</h2><p>{_e(method)}</p>"
        + _kv_table(rows, escape=False)
        + _per_class_table(estimate)
    )


def _outside(estimate: Estimate) -> str:
    if not estimate.outside_calibration:
        return "none: every request lies inside the calibrated lengths and batch sizes"
    return (
        f"{_num(estimate.outside_calibration)} requests ({_percent(estimate.outside_request_share)}) "
        f"holding {_percent(estimate.outside_energy_share)} of the energy: extrapolated, their uncertainty "
        "widened with the distance outside"
    )


def _per_class_table(estimate: Estimate) -> str:
    """Requests, energy and 1-σ per input-length class: where the energy and its uncertainty come from."""
    if not estimate.per_class:
        return ""
    head = ("input class", "requests", "GPU energy J", "± (1-σ)", "share of the energy", "outside the range")
    rows = []
    for c in estimate.per_class:
        share = c["energy_j"] / estimate.total_j if estimate.total_j else math.nan
        cells = [
            _td(c["class"]),
            _td_safe(_num(c["requests"])),
            _td_safe(_pm(c["energy_j"], c["uncertainty_j"])),
            _td_safe(_percent(_nan(c.get("rel_uncertainty")))),
            _td_safe(_percent(share)),
            _td_safe(_percent(_nan(c.get("outside_energy_share")))),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<h3>By input length</h3><p>The estimate per input-length class, with its 1-σ and the share of "
        "its energy outside the calibrated range.</p>" + _rows_table(head, rows, css_class="classes")
    )


def profile_section(profile: EnergyProfile, estimate: Estimate | None = None) -> str:
    """The "Energy model" section (HTML): the fit, its cross-validated error, range, limits, extrapolation."""
    quality = profile.fit_quality
    grid = profile.grid
    rows = [
        ("profile", _text(profile.describe())),
        ("fitted", f"{_text(profile.created_at)} from {_text(profile.source) or 'unknown source'}"),
        ("environment id", _text(profile.env_id)),
        (
            "calibration points",
            f"{_num(profile.points)} points at batch {_list(grid.batches)}; input {_list(grid.inputs)}; "
            f"output {_list(grid.outputs)}",
        ),
        ("physical model: energy (leave-one-out)", _loo(quality.get("loo_energy"), quality)),
        ("physical model: time (leave-one-out)", _loo(quality.get("loo_time"), quality)),
        ("extrapolation", _extrapolation(quality.get("extrapolation"))),
    ]
    phys = profile.physical
    if phys is not None:
        cov = phys.coverage
        rows.append(
            (
                "calibrated range",
                f"input {_range(cov.input_tokens)}, output {_range(cov.output_tokens)}, batch "
                f"{_range(cov.batch_size)}, context {_range(cov.context_tokens)} tokens",
            )
        )
        inside = math.hypot(phys.errors.cv_rel, phys.errors.meter_rel)
        rows.append(
            (
                "uncertainty inside the range (1-σ)",
                f"{_percent(phys.errors.cv_rel)} leave-one-out rms ⊕ {_percent(phys.errors.meter_rel)} "
                f"meter = {_percent(inside)}",
            )
        )
    limits = quality.get("limits")
    if isinstance(limits, Mapping):
        rows.append(("engine limits", _limits(limits)))
    if estimate is not None:
        rows.append(
            (
                "trace estimate outside calibration",
                f"{_percent(estimate.outside_energy_share)} of its energy "
                f"({_percent(estimate.outside_request_share)} of its requests; method {_e(estimate.method)})",
            )
        )
    rows.append(
        (
            "parametric model (rms relative error)",
            f"prefill {_percent(profile.parametric.prefill_rms_rel_error)}, "
            f"decode {_percent(profile.parametric.decode_rms_rel_error)}",
        )
    )
    if "energy_source" in quality:
        rows.append(("energy source", _text(quality["energy_source"])))
    other = {k: v for k, v in quality.items() if k not in _KNOWN_QUALITY and _scalar(v)}
    rows += [(str(k).replace("_", " "), _text(v)) for k, v in sorted(other.items())]
    return "<h2>Energy model</h2>" + _kv_table([(_e(k), v) for k, v in rows], escape=False)


def _loo(stats: Any, quality: Mapping[str, Any]) -> str:
    """Leave-one-out mean / max / rms over every calibration point, or why there is none."""
    if not isinstance(stats, Mapping) or "mean_abs_rel_error" not in stats:
        why = quality.get("physical")
        return f"not available ({_text(why)})" if isinstance(why, str) else "not available"
    return (
        f"mean {_percent(float(stats['mean_abs_rel_error']))}, max "
        f"{_percent(float(stats['max_abs_rel_error']))} (rms {_percent(float(stats['rms_rel_error']))}) "
        f"over {_num(int(stats['points']))} points, each predicted by the model fitted on all the others"
    )


def _extrapolation(extra: Any) -> str:
    if not isinstance(extra, Mapping) or "per_octave" not in extra:
        return "not available"
    cuts = extra.get("cuts") or []
    measured = float(extra.get("measured_per_octave") or 0.0)
    how = (
        f"measured on {_num(len(cuts))} cuts (fitted on the points on one side of a length or batch, "
        "predicting those beyond)"
        if cuts and measured > 0
        else "assumed: no cut of the calibration had points beyond it to measure it on"
    )
    return (
        f"the uncertainty grows by {_percent(float(extra['per_octave']))} of the estimate per octave "
        f"(factor of 2) outside the calibrated range; {how}"
    )


def _limits(limits: Mapping[str, Any]) -> str:
    """KV capacity, max_num_seqs, prefill chunk and idle power, each with where it comes from."""
    sources = limits.get("sources") if isinstance(limits.get("sources"), Mapping) else {}
    assert isinstance(sources, Mapping)

    def source(key: str) -> str:
        return f" ({_text(sources[key])})" if sources.get(key) else ""

    seqs = limits.get("max_num_seqs")
    chunk = limits.get("prefill_chunk_tokens")
    chunk_text = (
        "one pass per batch"
        if chunk is None or float(chunk) >= 2**40
        else f"{_num(chunk)} tokens per pass{source('prefill_chunk_tokens')}"
    )
    return "; ".join(
        [
            f"KV cache {_num(limits.get('kv_capacity_tokens'))} tokens{source('kv_capacity_tokens')}",
            f"max_num_seqs {_num(seqs) if seqs is not None else 'none'}{source('max_num_seqs')}",
            f"prefill {chunk_text}",
            f"idle power {_num(limits.get('idle_power_w'))} W{source('idle_power_w')}",
        ]
    )


def _range(bounds: tuple[float, float]) -> str:
    return f"{_num(bounds[0])}–{_num(bounds[1])}"


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None

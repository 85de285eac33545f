"""The report's "Recommendation" section: the least-energy configuration meeting a latency SLO (modelled).

The search is `llm_energy.recommend.recommend`, the one behind `llm-energy recommend`: every profile
× batch size on the trace at its arrival rate. The section shows the choice (or, when nothing meets the
SLO, the closest candidate and says so), the baselines with the saving in % (with the bounds of both
estimates) and kWh/day, the fastest candidate and the energy–latency Pareto frontier. Every figure is
modelled from the profiles' physical models; every value from a profile or trace name is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_energy.report._html_parts import _e, _kv_table, _num, _percent, _pm, _rows_table, _td, _td_safe

if TYPE_CHECKING:
    from llm_energy.carbon import GridIntensity
    from llm_energy.modeling.profile import EnergyProfile
    from llm_energy.recommend import Candidate, Recommendation
    from llm_energy.workloads.traces import Trace

DEFAULT_SLO = "ttft=2s,tpot=100ms"


@dataclass(frozen=True)
class RecommendationView:
    """A recommendation and what it was asked for, as the report shows it.

    Attributes:
        recommendation: The search's result.
        trace: Name of the trace searched on.
        slo: The SLO as given (e.g. `ttft=2s,tpot=100ms`).
        grid: Grid intensity for CO₂ per day, or None.
        price_per_kwh: Electricity price for cost per day, or None.
    """

    recommendation: Recommendation
    trace: str
    slo: str
    grid: GridIntensity | None = None
    price_per_kwh: float | None = None


def recommend_for_report(
    profiles: Mapping[str, EnergyProfile],
    trace: Trace,
    slo: str,
    *,
    rate_per_s: float | None = None,
    grid: GridIntensity | None = None,
    price_per_kwh: float | None = None,
) -> RecommendationView:
    """Run the recommender on `trace` at `rate_per_s` (default: the trace's own rate) under `slo`.

    Raises:
        ConfigError: A malformed SLO (`workloads.slo.parse_slo`), a trace without arrival times and no rate,
            or anything `recommend.recommend` refuses.
    """
    from llm_energy.errors import ConfigError
    from llm_energy.recommend import recommend
    from llm_energy.workloads.slo import parse_slo

    slo_s = parse_slo(slo)
    if not slo_s:
        raise ConfigError("--slo is empty: give bounds such as ttft=2s,tpot=100ms")
    rate = rate_per_s if rate_per_s is not None else trace.summary().rate_per_s
    if rate is None:
        raise ConfigError(f"trace {trace.name} has no arrival times: pass --rate for the recommendation")
    rec = recommend(profiles, trace.input_tokens, trace.output_tokens, rate_per_s=rate, slo_s=slo_s)
    return RecommendationView(rec, trace.name, slo, grid, price_per_kwh)


def recommendation_section(view: RecommendationView) -> str:
    """The "Recommendation" section (HTML): choice or closest, baselines, fastest, Pareto frontier."""
    from llm_energy.carbon import Footprint

    rec = view.recommendation
    grid = view.grid.g_per_kwh if view.grid else None

    def footprint(c: Candidate) -> str:
        return _e(
            "; ".join(Footprint(c.energy_per_request_j, rec.rate_per_s, grid, view.price_per_kwh).lines())
        )

    profiles = list(dict.fromkeys(c.profile for c in rec.candidates))
    parts = [
        "<h2>Recommendation (modelled)</h2>",
        f"<p>The least GPU energy per request that meets the SLO <code>{_e(view.slo)}</code> on "
        f"<code>{_e(view.trace)}</code> at {_num(rec.rate_per_s)} requests/s, searched over "
        f"{_num(len(rec.candidates))} modelled candidates (profile × batch size) of "
        f"{', '.join(_e(p) for p in profiles)}. Every figure here is <strong>modelled</strong> from the "
        "profiles' physical models, not measured; check it with <code>llm-energy recommend "
        "--validate</code>.</p>",
    ]
    target = rec.choice
    if target is None:
        target = rec.closest()
        parts.append(
            f'<p class="note">No configuration meets the SLO at this rate (modelled). The closest is '
            f"{_e(target.label())}: worst latency / bound (or rate / capacity) "
            f"{_num(target.slo_ratio(rec.slo_s, rec.rate_per_s))}×.</p>"
        )
    role = "choice" if rec.choice is not None else "closest (does not meet the SLO)"
    rows = [
        ("", f"<strong>{_e(role)}</strong> (modelled)"),
        ("configuration", _e(target.label())),
        ("engine / mode", f"{_e(target.engine)} / {_e(target.mode or '–')} ({_e(target.batching)} batching)"),
        ("batch size", _num(target.batch_size)),
        ("J / request", _pm(target.energy_per_request_j, target.uncertainty_per_request_j)),
        (
            "latency",
            f"TTFT {_ms(target.ttft_s)} ms, TPOT {_ms(target.tpot_s)} ms, E2E {_ms(target.e2e_s)} ms",
        ),
        ("capacity", f"{_num(target.throughput_per_s)} requests/s on {_num(target.gpus)} GPU(s)"),
        ("footprint", footprint(target)),
    ]
    if view.grid is not None:
        rows.append(("carbon intensity", f"{_num(view.grid.g_per_kwh)} gCO₂/kWh ({_e(view.grid.label)})"))
    parts.append(_kv_table(rows, escape=False))
    parts.append("<h3>Baselines and the fastest configuration (modelled)</h3>" + _candidates_table(view))
    parts.append(  # folded: the frontier can hold dozens of candidates
        "<details><summary><h3>Energy–latency Pareto frontier (modelled)</h3></summary><p>Candidates that "
        "no other candidate beats on both energy per request and TPOT, fastest first. Feasible: meets the "
        "SLO, keeps up with the rate and fits in memory.</p>" + _pareto_table(rec) + "</details>"
    )
    if rec.notes:
        parts.append("<ul>" + "".join(f'<li class="meta">{_e(n)}</li>' for n in rec.notes) + "</ul>")
    return "".join(parts)


def _candidates_table(view: RecommendationView) -> str:
    rec = view.recommendation
    head = (
        "role", "configuration", "J / request", "TTFT ms", "TPOT ms", "feasible",
        "saving of the choice", "kWh/day", "kWh/day saved",
    )  # fmt: skip
    rows = []
    for i, b in enumerate(rec.baselines):
        saving = saved = "–"
        rng = rec.saving_range(b.candidate)
        kwh, unc = rec.kwh_per_day_saved(b.candidate), rec.kwh_per_day_saved_unc(b.candidate)
        if rec.choice is not None and rng is not None and kwh is not None and unc is not None:
            s = 1 - rec.choice.energy_per_request_j / b.candidate.energy_per_request_j
            saving = f"{_percent(s)} [{_percent(rng[0])}, {_percent(rng[1])}]"
            saved = _pm(kwh, unc)
        rows.append(
            _candidate_row(f"baseline {i + 1}: {b.label}", b.candidate, rec.rate_per_s, saving, saved)
        )
    rows.append(_candidate_row("fastest", rec.fastest, rec.rate_per_s, "–", "–"))
    return _rows_table(head, rows)


def _candidate_row(role: str, c: Candidate, rate_per_s: float, saving: str, saved: str) -> str:
    from llm_energy.carbon import Footprint

    day = Footprint(c.energy_per_request_j, rate_per_s).kwh_per_day
    cells = [
        _td(role),
        _td(c.label()),
        _td_safe(_pm(c.energy_per_request_j, c.uncertainty_per_request_j)),
        _td_safe(_ms(c.ttft_s)),
        _td_safe(_ms(c.tpot_s)),
        _td("yes" if c.feasible else ("latency only" if c.meets_slo else "no")),
        _td_safe(saving),
        _td_safe(_num(day)),
        _td_safe(saved),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _pareto_table(rec: Recommendation) -> str:
    head = (
        "configuration", "engine / mode", "batch", "J / request", "TTFT ms", "TPOT ms",
        "capacity req/s", "feasible",
    )  # fmt: skip
    rows = []
    for c in rec.pareto():
        cells = [
            _td(c.label()),
            _td(f"{c.engine} / {c.mode or '–'}"),
            _td(c.batch_size, num=True),
            _td_safe(_pm(c.energy_per_request_j, c.uncertainty_per_request_j)),
            _td_safe(_ms(c.ttft_s)),
            _td_safe(_ms(c.tpot_s)),
            _td_safe(_num(c.throughput_per_s)),
            _td("yes" if c.feasible else "no"),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _rows_table(head, rows)


def _ms(seconds: float) -> str:
    return _num(seconds * 1e3)

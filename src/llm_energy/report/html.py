"""One self-contained HTML report of a runs table, optionally with a trace estimate and a fitted profile.

The report is a single file that can be mailed, archived next to the results store or opened offline,
and it promises:

- **nothing is fetched**: figures are embedded as base64 PNG `data:` URIs, the CSS is inline, there is
  no script, and a Content-Security-Policy (`default-src 'none'`) tells the browser to load nothing
  else even if something slipped in;
- **data cannot inject markup**: every string that comes from the runs, the environment, an estimate
  or a profile goes through `html.escape` (quotes included);
- **writing is atomic**: `write_report` writes a temporary file next to the target and renames it,
  so a reader never sees a half-written report.

Sections, what a reader came for first: the headline numbers (`headline`), the energy–latency
frontier and energy against batch size per engine, the trace estimate with its uncertainty, the
recommendation for a latency SLO (`recommendation_section`, modelled) and measured validation runs
against the models (`validation_section`); then the other figures of `plots` and the method; the
tables last, folded (`<details>`): one row per configuration (`summary.config_summary`), the
environment (`environment_section`) and the energy model's fit quality (`model_section`, which also
builds the trace estimate's section).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from llm_energy.atomic import write_atomically
from llm_energy.errors import ConfigError
from llm_energy.report import plots
from llm_energy.report._html_parts import (
    _CSS,
    _e,
    _num,
    _percent,
    _pm,
    _rows_table,
    _td,
    _td_safe,
)
from llm_energy.report.environment_section import environment_section
from llm_energy.report.headline import headline_section
from llm_energy.report.summary import config_summary

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from llm_energy.estimate import Estimate
    from llm_energy.modeling.profile import EnergyProfile
    from llm_energy.report.recommendation_section import RecommendationView
    from llm_energy.report.validation_section import ValidationEntry

logger = logging.getLogger(__name__)

DEFAULT_TITLE: Final = "llm-energy report"

_METHOD: Final = (
    "Every energy figure is GPU energy in joules read from the board's own cumulative energy counter "
    "(NVML, through Zeus's device layer) over named windows: prefill, decode and whole generations "
    "(total). The counter updates only every ~100 ms, so each window states a bound on its error (one "
    "update period × the power at its edges), and short phases are repeated inside one window of a few "
    "seconds and divided by the repetitions. Figures are totals, idle power included. J per output token "
    "is the total-phase energy of one batch divided by its B × output-length generated tokens, so it "
    "includes prefill; engines that cannot decode apart (vLLM) derive decode as total − prefill. Models "
    "have random weights of the real shapes."
)


_METHOD_DOC: Final = "The full method is in <code>docs/methodology.md</code>."

_CPU_ONLY: Final = (
    "No GPU was metered in {which}: {they} ran on the CPU, so {their} GPU energy columns are empty "
    "(not 0 J) and {they} are left out of the figures. CPU energy is stored apart ({cpu}) and never "
    "added to GPU figures."
)


def _method_text(frame: pd.DataFrame) -> str:
    """The method as it applies to these runs: GPU counters, and what runs without a GPU hold."""
    if not len(frame) or "env_gpu_count" not in frame.columns:
        return _METHOD
    gpu_count = frame["env_gpu_count"].fillna(0)
    cpu_only = frame[gpu_count.astype(float) == 0]
    if cpu_only.empty:
        return _METHOD
    sources = {
        str(s)
        for column in cpu_only.columns
        if str(column).endswith("_cpu_source")
        for s in cpu_only[column].dropna()
        if str(s)
    }
    cpu = (
        "estimated as TDP × utilisation where no RAPL counter was readable"
        if any("estimated" in s for s in sources)
        else "measured by RAPL"
        if sources
        else "not metered"
    )
    if len(cpu_only) == len(frame):
        return _CPU_ONLY.format(which="these runs", they="they", their="their", cpu=cpu)
    which = f"{len(cpu_only)} of the {len(frame)} runs"
    return _METHOD + " " + _CPU_ONLY.format(which=which, they="those", their="their", cpu=cpu)


def render_report(
    frame: pd.DataFrame,
    *,
    estimate: Estimate | None = None,
    profile: EnergyProfile | None = None,
    validation: Sequence[ValidationEntry] = (),
    recommendation: RecommendationView | None = None,
    title: str = DEFAULT_TITLE,
    generated_at: str | None = None,
    figures: bool = True,
    dpi: int = 100,
) -> str:
    """Return the report as one self-contained HTML document.

    Args:
        frame: One row per run (`Store.runs_frame()` or its CSV export). It may be empty; a figure
            whose columns are missing is replaced by a note saying why.
        estimate: A trace estimate (`estimate_trace`) to show with its uncertainty, per input-length
            class, and (binned and p1 estimates) its largest bins.
        profile: The energy profile to describe with its fit quality (the physical model's
            leave-one-out and extrapolation errors, its range and limits; the share of the estimate
            outside that range); it also supplies the environment when the frame has no `env_*` columns.
        validation: Measured validation runs, compared with the models where a profile was given
            (`validation_section.validation_entries`).
        recommendation: The recommendation for an SLO (`recommendation_section.recommend_for_report`).
        title: The report's title (escaped).
        generated_at: The time stamp to print; the current UTC time when None (pass one for
            reproducible output).
        figures: Draw and embed the figures (about 0.3 s each); False gives the tables alone.
        dpi: Resolution of the embedded figures (dots per inch; 7-inch-wide figures).

    Returns:
        The HTML text (UTF-8 when written by `write_report`).

    Raises:
        ConfigError: The frame lacks the configuration columns (batch_size, input_len, output_len,
            total_energy_j) while holding runs.
    """
    stamp = generated_at or datetime.now(UTC).isoformat(timespec="seconds")
    summary = config_summary(frame) if len(frame) else None
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network, ever: only inline styles and data: images may load.
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Generated {_e(stamp)} by llm-energy · {_run_counts(frame)}</p>',
        headline_section(frame, summary, estimate, recommendation),
    ]
    body = _results(frame, summary, estimate, validation, recommendation, dpi if figures else None)
    tables = [
        _folded(_configurations_section(summary)),
        _folded(environment_section(frame, profile)),
        _folded(_profile_section(profile, estimate)) if profile is not None else "",
    ]
    method = f"<h2>Method</h2><p>{_e(_method_text(frame))} {_METHOD_DOC}</p>"
    return "\n".join([*head, *body, method, *tables, "</body></html>"]) + "\n"


def _results(
    frame: pd.DataFrame,
    summary: pd.DataFrame | None,
    estimate: Estimate | None,
    validation: Sequence[ValidationEntry],
    recommendation: RecommendationView | None,
    dpi: int | None,
) -> list[str]:
    """What a reader came for, in order.

    The frontier and energy vs batch, the trace estimate, the recommendation, the models against
    measurements, then the other figures (none when `dpi` is None).
    """
    parts = [_lead_figures(frame, summary, dpi)] if dpi is not None else []
    if estimate is not None:
        parts.append(_estimate_section(estimate, dpi))
    if recommendation is not None:
        from llm_energy.report.recommendation_section import recommendation_section

        parts.append(recommendation_section(recommendation))
    if validation:
        from llm_energy.report.validation_section import validation_section

        parts.append(validation_section(validation))
    if dpi is not None:
        parts.append(_more_figures(frame, summary, dpi))
    return parts


def _folded(section: str) -> str:
    """A section (`<h2>title</h2>` then its body) folded: only the title shows until it is opened."""
    if not section.startswith("<h2>"):
        return section
    heading, _, rest = section.partition("</h2>")
    return f"<details><summary>{heading}</h2></summary>{rest}</details>"


def write_report(path: str | Path, html_text: str) -> Path:
    """Write `html_text` to `path` (UTF-8) atomically: a temporary file in the same folder, then rename.

    Returns:
        The path written.

    Raises:
        ConfigError: The file cannot be written.
    """
    target = write_atomically(path, html_text.encode("utf-8"))
    logger.info("wrote report %s (%d bytes)", target, len(html_text))
    return target


# -- sections ------------------------------------------------------------------------------------


def _run_counts(frame: pd.DataFrame) -> str:
    if not len(frame):
        return "no runs"
    if "status" not in frame.columns:
        return f"{len(frame)} runs"
    counts = frame["status"].fillna("unknown").astype(str).value_counts()
    return f"{len(frame)} runs (" + ", ".join(f"{int(n)} {_e(s)}" for s, n in sorted(counts.items())) + ")"


def _configurations_section(summary: pd.DataFrame | None) -> str:
    if summary is None or summary.empty:
        return "<h2>Configurations</h2><p>No runs.</p>"
    head = (
        "model", "engine", "mode", "B", "in", "out", "runs", "J / output token", "prefill share",
        "J / batch", "duration s", "latency / token ms", "output tok/s", "mean power W", "flags",
    )  # fmt: skip
    rows = []
    for r in summary.itertuples():
        runs = str(r.runs) if r.status == "ok" else f"{r.runs} ({r.status})"
        cells = [
            _td(r.model),
            _td(r.engine),
            _td(r.mode),
            _td(r.batch_size, num=True),
            _td(r.input_len, num=True),
            _td(r.output_len, num=True),
            _td(runs, num=True),
            _td_safe(_pm(r.j_per_token, r.j_per_token_unc)),
            _td_safe(_percent(r.prefill_share)),
            _td_safe(_num(r.energy_j)),
            _td_safe(_num(r.duration_s)),
            _td_safe(_num(r.latency_per_token_s * 1e3)),
            _td_safe(_num(r.tokens_per_s)),
            _td_safe(_num(r.mean_power_w)),
            _td(str(r.flags).replace(";", "; ")),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<h2>Configurations</h2>"
        "<p>One row per configuration; repeats are averaged (± the larger of the meter's bound and the "
        "spread over repeats). J per output token is the GPU energy of one whole generation per generated "
        "token, prefill included; latency per token is the batch's duration divided by the output length.</p>"
        + _rows_table(head, rows)
    )


def _lead_figures(frame: pd.DataFrame, summary: pd.DataFrame | None, dpi: int) -> str:
    """The energy–latency frontier, then energy against batch size, one figure per engine."""
    if summary is None or summary.empty:
        return ""
    figures: list[tuple[str, Callable[[], Figure]]] = [
        (
            "Energy against latency per output token; lines join each shape's Pareto frontier "
            "(no other batch size is both cheaper and faster).",
            lambda: plots.pareto_frontier(frame),
        )
    ]
    engines = sorted(str(e) for e in summary["engine"].dropna().unique()) if "engine" in frame.columns else []
    for engine in engines or [""]:
        subset = frame[frame["engine"].astype(str) == engine] if engine else frame
        what = f", engine {engine}" if len(engines) > 1 else ""
        figures.append(
            (
                f"Energy per output token against batch size{what} (log-log); error bars are the "
                "meter's bounds.",
                partial(plots.energy_vs_batch, subset),
            )
        )
    return "<h2>Energy, latency and batch size</h2>" + "".join(
        _figure_html(caption, make, dpi) for caption, make in figures
    )


def _more_figures(frame: pd.DataFrame, summary: pd.DataFrame | None, dpi: int) -> str:
    """The phase split and energy against input and output length."""
    if summary is None or summary.empty:
        return ""
    figures: Sequence[tuple[str, Callable[[], Figure]]] = (
        (
            "Prefill and decode energy per output token of every configuration, stacked.",
            lambda: plots.phase_split(frame),
        ),
        ("Energy per output token against input length.", lambda: plots.energy_vs_length(frame, "input")),
        ("Energy per output token against output length.", lambda: plots.energy_vs_length(frame, "output")),
    )
    return "<h2>Prefill, decode and length</h2>" + "".join(
        _figure_html(caption, make, dpi) for caption, make in figures
    )


def _estimate_section(estimate: Estimate, dpi: int | None) -> str:
    """The trace estimate (`model_section`) and, for a binned estimate, its largest bins."""
    from llm_energy.report.model_section import estimate_section

    body = estimate_section(estimate)
    if estimate.per_bin and dpi is not None:
        body += _figure_html(
            "Energy of the largest bins of the trace estimate, with their uncertainty.",
            lambda: plots.estimate_bins(estimate),
            dpi,
        )
    return body


def _profile_section(profile: EnergyProfile, estimate: Estimate | None = None) -> str:
    """The energy model's fit and how far to trust it (`model_section`)."""
    from llm_energy.report.model_section import profile_section

    return profile_section(profile, estimate)


# -- helpers -------------------------------------------------------------------------------------


def _figure_html(caption: str, make: Callable[[], Figure], dpi: int) -> str:
    """Render one figure as an embedded PNG, or a note saying why it could not be drawn."""
    try:
        png = plots.figure_bytes(make(), "png", dpi=dpi)
    except ConfigError as e:
        logger.debug("figure skipped: %s", e)
        return f'<p class="note">Figure not drawn ({_e(caption.rstrip("."))}): {_e(e)}</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )

"""Console tables of a runs frame, for `llm-energy report` and friends (rendered by the caller with rich).

The table shows the same per-configuration figures as the HTML report (`summary.config_summary`).
Every cell is a `rich.text.Text`, so a value from the data (a model name holding `[bold]`, say) is
shown as typed and never interpreted as console markup.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llm_energy.report.summary import config_summary

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table


def runs_table(frame: pd.DataFrame, *, title: str = "Runs per configuration") -> Table:
    """Return a rich `Table` with one row per configuration of `frame`.

    Columns: model, engine, mode, batch size, input and output length, runs (with the failed ones),
    J per output token ± uncertainty, prefill share, latency per output token (ms), output tokens per
    second, mean GPU power (W) and measurement flags.

    Args:
        frame: One row per run (`Store.runs_frame()` or its CSV export); may be empty.
        title: The table's title (shown as plain text).

    Raises:
        ConfigError: The frame holds runs but lacks batch_size, input_len, output_len or total_energy_j.
    """
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), show_lines=False)
    for name in ("model", "engine", "mode"):
        table.add_column(name, overflow="fold")  # at 80 columns an identifier wraps, never "llama-3.1-7…"
    for name in ("B", "in", "out", "runs", "J/out tok", "prefill", "ms/tok", "tok/s", "W"):
        table.add_column(name, justify="right", overflow="fold")
    table.add_column("flags", overflow="fold")
    if not len(frame):
        return table
    for r in config_summary(frame).itertuples():
        runs = str(r.runs) if r.status == "ok" else f"{r.runs} ({r.status})"
        unc = f" ± {r.j_per_token_unc:.2g}" if math.isfinite(r.j_per_token_unc) else ""
        share = f"{100 * r.prefill_share:.0f}%" if math.isfinite(r.prefill_share) else "–"
        cells = [
            r.model,
            r.engine,
            r.mode,
            r.batch_size,
            r.input_len,
            r.output_len,
            runs,
            _fmt(r.j_per_token) + (unc if math.isfinite(r.j_per_token) else ""),
            share,
            _fmt(r.latency_per_token_s * 1e3),
            _fmt(r.tokens_per_s),
            _fmt(r.mean_power_w),
            str(r.flags).replace(";", " "),
        ]
        table.add_row(*(Text(str(c)) for c in cells))
    return table


def _fmt(value: float) -> str:
    """Three significant digits ('–' when missing); no exponent below 10^6."""
    if not math.isfinite(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"

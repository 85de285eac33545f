"""Reports of measured runs: figures (matplotlib), one self-contained HTML file, and console tables.

Importing this package is light: matplotlib, pandas and rich load when a function needs them.

- `plots`: `energy_vs_batch`, `phase_split`, `energy_vs_length`, `pareto_frontier` (+ `pareto_points`),
  `estimate_bins`, each returning a matplotlib `Figure`; `save_figure` writes PNG or SVG.
- `html`: `render_report` returns one offline HTML document; `write_report` writes it atomically.
- `tables`: `runs_table` returns a rich `Table` for the console.
- `summary`: `config_summary`, the per-configuration figures all of the above show.
"""

from __future__ import annotations

from llm_energy.report.html import render_report, write_report
from llm_energy.report.plots import (
    energy_vs_batch,
    energy_vs_length,
    estimate_bins,
    pareto_frontier,
    pareto_points,
    phase_split,
    save_figure,
)
from llm_energy.report.summary import config_summary
from llm_energy.report.tables import runs_table

__all__ = [
    "config_summary",
    "energy_vs_batch",
    "energy_vs_length",
    "estimate_bins",
    "pareto_frontier",
    "pareto_points",
    "phase_split",
    "render_report",
    "runs_table",
    "save_figure",
    "write_report",
]

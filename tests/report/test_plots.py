"""Tests of llm_energy.report.plots: what each figure draws, the Pareto set, and figure files."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_trace
from llm_energy.report import plots
from llm_energy.report.summary import config_summary

# The bundled calibration (conftest `calibration`): one configuration, one run per point.
BATCHES = (1, 4, 16, 64, 128)
INPUTS = (128, 512, 2048)
OUTPUTS = (32, 128)


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_importing_report_loads_neither_matplotlib_nor_pandas():
    """`import llm_energy.report` stays light: matplotlib, pandas and rich load on first use."""
    code = (
        "import json, sys\nimport llm_energy.report\n"
        "print(json.dumps([m for m in ('matplotlib', 'pandas', 'rich') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_summary_derives_j_per_output_token_from_the_total_phase(calibration):
    """J per output token = total energy of one batch / (B x L_out), prefill included."""
    summary = config_summary(calibration)
    assert len(summary) == len(BATCHES) * len(INPUTS) * len(OUTPUTS)
    row = summary[(summary.batch_size == 16) & (summary.input_len == 512) & (summary.output_len == 128)].iloc[
        0
    ]
    run = calibration[
        (calibration.batch_size == 16) & (calibration.input_len == 512) & (calibration.output_len == 128)
    ].iloc[0]
    assert row.j_per_token == pytest.approx(run.total_energy_j / (16 * 128))
    assert row.j_per_token_unc == pytest.approx(run.total_uncertainty_j / (16 * 128))
    assert row.latency_per_token_s == pytest.approx(run.total_duration_s / 128)
    assert row.prefill_j_per_token + row.decode_j_per_token == pytest.approx(row.j_per_token, rel=0.01)


def test_summary_averages_repeats_and_counts_failed_runs(calibration):
    """Repeats are averaged; failed runs appear in `status` and contribute no figure."""
    one = calibration[(calibration.batch_size == 4) & (calibration.input_len == 128)].copy()
    doubled = one.assign(total_energy_j=one.total_energy_j * 1.1)
    failed = one.assign(status="oom", total_energy_j=np.nan)
    summary = config_summary(pd.concat([one, doubled, failed]))
    assert list(summary.runs) == [2, 2]
    assert set(summary.status) == {"2 ok, 1 oom"}
    expected = (one.total_energy_j * 1.05 / one.total_tokens).to_numpy()
    assert summary.j_per_token.to_numpy() == pytest.approx(expected)


def test_energy_vs_batch_draws_one_line_per_shape_with_error_bars(calibration):
    """One error-bar series per (engine/mode, shape); each holds every batch size with its bound."""
    fig = plots.energy_vs_batch(calibration)
    ax = fig.axes[0]
    assert len(ax.containers) == len(INPUTS) * len(OUTPUTS)
    assert len(_legend_texts(fig)) == len(INPUTS) * len(OUTPUTS)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    line = ax.containers[0].lines[0]
    assert list(line.get_xdata()) == list(BATCHES)
    first = calibration[(calibration.input_len == 128) & (calibration.output_len == 32)].sort_values(
        "batch_size"
    )
    assert line.get_ydata() == pytest.approx((first.total_energy_j / first.total_tokens).to_numpy())


def test_energy_vs_batch_at_one_shape_draws_one_line_per_engine_mode(calibration):
    eager = calibration.assign(mode="eager", total_energy_j=calibration.total_energy_j * 1.5)
    fig = plots.energy_vs_batch(pd.concat([calibration, eager]), input_len=512, output_len=128)
    assert len(fig.axes[0].containers) == 2
    assert sorted(_legend_texts(fig)) == ["vllm/cudagraphs", "vllm/eager"]


def test_energy_vs_batch_rejects_a_shape_that_was_not_measured(calibration):
    with pytest.raises(ConfigError, match="input_len=999"):
        plots.energy_vs_batch(calibration, input_len=999)


@pytest.mark.parametrize(
    ("axis", "lines", "points"),
    [
        ("input", len(BATCHES) * len(OUTPUTS), len(INPUTS)),
        ("output", len(BATCHES) * len(INPUTS), len(OUTPUTS)),
    ],
)
def test_energy_vs_length_draws_one_line_per_batch_and_other_length(calibration, axis, lines, points):
    ax = plots.energy_vs_length(calibration, axis).axes[0]
    assert len(ax.containers) == lines
    assert all(len(c.lines[0].get_xdata()) == points for c in ax.containers)
    one_batch = plots.energy_vs_length(calibration, axis, batch_size=16).axes[0]
    assert len(one_batch.containers) == lines // len(BATCHES)


def test_energy_vs_length_rejects_an_unknown_axis(calibration):
    with pytest.raises(ConfigError, match="axis"):
        plots.energy_vs_length(calibration, "batch")  # type: ignore[arg-type]


def test_phase_split_stacks_prefill_under_decode_for_every_configuration(calibration):
    """Two bars per configuration: prefill J/output token, and decode stacked on it."""
    ax = plots.phase_split(calibration).axes[0]
    n = len(calibration)
    assert len(ax.patches) == 2 * n
    prefill, decode = ax.patches[:n], ax.patches[n:]
    summary = config_summary(calibration)
    assert [p.get_height() for p in prefill] == pytest.approx(list(summary.prefill_j_per_token))
    assert [d.get_y() for d in decode] == pytest.approx([p.get_height() for p in prefill])


def test_phase_split_shares_sum_to_one(calibration):
    ax = plots.phase_split(calibration, share=True).axes[0]
    n = len(calibration)
    tops = [d.get_y() + d.get_height() for d in ax.patches[n:]]
    assert tops == pytest.approx([1.0] * n)


def test_phase_split_needs_both_phases(calibration):
    with pytest.raises(ConfigError, match="prefill_energy_j"):
        plots.phase_split(calibration.drop(columns=["prefill_energy_j"]))


def test_pareto_points_of_a_hand_made_set():
    """Points dominated on both axes (or equal on one, worse on the other) are left out."""
    x = [1.0, 2.0, 3.0, 4.0, 2.5, 1.0, 5.0]
    y = [5.0, 3.0, 4.0, 1.0, 3.0, 6.0, 1.0]
    # 5 is dominated by 0 (same x, higher y); 4 by 1 (same y, slower); 2 by 1; 6 by 3 (same y, slower).
    assert plots.pareto_points(x, y) == [0, 1, 3]


def test_pareto_points_edge_cases():
    assert plots.pareto_points([], []) == []
    assert plots.pareto_points([1.0, 1.0], [2.0, 2.0]) == [0]  # exact duplicates: the first is kept
    assert plots.pareto_points([1.0, np.nan, 0.5], [1.0, 0.1, np.inf]) == [0]
    assert plots.pareto_points([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == [2, 1, 0]  # sorted by x
    with pytest.raises(ConfigError, match="equal length"):
        plots.pareto_points([1.0, 2.0], [1.0])


def test_pareto_points_agree_with_brute_force():
    """Returned points are exactly those no other point dominates (ties: first kept)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 8, size=60).astype(float)
    y = rng.integers(0, 8, size=60).astype(float)
    kept = set(plots.pareto_points(x, y))
    for i, j in itertools.product(range(60), repeat=2):
        if j in kept and i != j:
            dominates = x[i] <= x[j] and y[i] <= y[j] and (x[i] < x[j] or y[i] < y[j])
            assert not dominates, (i, j)
    for j in set(range(60)) - kept:
        assert any((x[i] <= x[j] and y[i] <= y[j]) and (x[i] < x[j] or y[i] < y[j] or i < j) for i in kept), j


def test_pareto_frontier_joins_one_frontier_per_shape(calibration):
    """One line per shape; along it latency rises and energy per token falls."""
    ax = plots.pareto_frontier(calibration).axes[0]
    assert len(ax.lines) == len(INPUTS) * len(OUTPUTS)
    assert len(ax.collections) == len(INPUTS) * len(OUTPUTS)  # one scatter per shape and config
    for line in ax.lines:
        xs, ys = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert len(xs) >= 2
        assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) < 0)


def test_estimate_bins_shows_the_top_bins_and_sums_the_rest(binned_estimate):
    estimate = binned_estimate
    n_bins = len(estimate.per_bin)
    assert n_bins > 6
    ax = plots.estimate_bins(estimate, top=5).axes[0]
    assert len(ax.patches) == 6
    widths = [p.get_width() for p in ax.patches]
    assert widths[:5] == sorted(widths[:5], reverse=True)
    scale = 1e3 if max(b["energy_j"] for b in estimate.per_bin) >= 1e4 else 1.0
    assert sum(widths) * scale == pytest.approx(estimate.total_j)
    assert len(plots.estimate_bins(estimate, top=n_bins).axes[0].patches) == n_bins


def test_estimate_bins_needs_a_per_bin_table(profile, estimate):
    """Per-request methods (the default physical model, parametric) have no bins to draw."""
    parametric = estimate_trace(np.array([100, 200]), np.array([50, 60]), profile, method="parametric")
    for per_request in (parametric, estimate):
        with pytest.raises(ConfigError, match=f"the {per_request.method} estimate has no per-bin"):
            plots.estimate_bins(per_request)


def test_plots_refuse_a_frame_without_successful_runs(calibration):
    failed = calibration.assign(status="oom")
    with pytest.raises(ConfigError, match="no successful run"):
        plots.energy_vs_batch(failed)
    with pytest.raises(ConfigError, match="total_energy_j"):
        plots.pareto_frontier(calibration.drop(columns=["total_energy_j"]))


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG\r\n\x1a\n"), (".SVG", b"<?xml")])
def test_save_figure_writes_png_or_svg_by_suffix(calibration, tmp_path: Path, suffix: str, magic: bytes):
    target = tmp_path / "figs" / f"batch{suffix}"
    written = plots.save_figure(plots.energy_vs_batch(calibration), target)
    data = target.read_bytes()
    assert written == target
    assert data.startswith(magic)
    assert b"http://matplotlib" not in data and b"https://matplotlib" not in data
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left


@pytest.mark.parametrize("name", ["plot.jpg", "plot.pdf", "plot"])
def test_save_figure_rejects_other_suffixes(calibration, tmp_path: Path, name: str):
    with pytest.raises(ConfigError, match=r"\.png, \.svg"):
        plots.save_figure(plots.energy_vs_batch(calibration), tmp_path / name)
    assert list(tmp_path.iterdir()) == []

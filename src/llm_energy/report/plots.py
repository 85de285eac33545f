"""Report figures: each function takes a runs frame (or an `Estimate`) and returns a matplotlib `Figure`.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through `pyplot`: no global
figure registry, no GUI backend, no state shared between calls, and a figure is freed as soon as the
caller drops it. matplotlib is imported inside the functions, so `import llm_energy.report` stays
light. The figures read the per-configuration figures of `summary.config_summary` (J per output token
of the total phase, its uncertainty, latency per output token), so every plot agrees with the tables.

Counting, which the tests rely on: `energy_vs_batch` and `energy_vs_length` draw one error-bar series
(`ax.containers`) per line; `phase_split` two bars per configuration; `pareto_frontier` one joined
line per (input, output) shape; `estimate_bins` one bar per bin shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from llm_energy.atomic import write_atomically
from llm_energy.errors import ConfigError
from llm_energy.report.summary import config_summary, series_label, varying

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from llm_energy.estimate import Estimate

FigureFormat = Literal["png", "svg"]
FIGURE_FORMATS: Final[dict[str, FigureFormat]] = {".png": "png", ".svg": "svg"}
"""File suffixes `save_figure` writes (lower case) and the format of each."""

_MODEL_KEYS: Final = ("model", "engine", "mode")
_SHAPE_KEYS: Final = ("input_len", "output_len")
_MARKERS: Final = ("o", "s", "^", "D", "v", "P", "X", "*")
_J_PER_TOKEN: Final = "GPU J per output token (prefill included)"


def energy_vs_batch(
    frame: pd.DataFrame, *, input_len: int | None = None, output_len: int | None = None
) -> Figure:
    """Plot J per output token against batch size, log-log, with the measurement bounds as error bars.

    One line per (model, engine, mode, input length, output length): a configuration measured at
    several shapes gets one line per shape, since energy per token depends on the shape as much as on
    the batch. Pass `input_len`/`output_len` to keep one shape.

    Raises:
        ConfigError: No successful run (after the filters), or a required column is missing.
    """
    points = _ok_points(frame, input_len=input_len, output_len=output_len)
    fig, ax = _figure()
    keys = (*_MODEL_KEYS, *_SHAPE_KEYS)
    label_keys = varying(points, keys) or ("engine", "mode")
    for i, (_, unsorted) in enumerate(points.groupby(list(keys), sort=True)):
        group = unsorted.sort_values("batch_size")
        _errorbar(
            ax,
            group["batch_size"],
            group,
            label=series_label(group.iloc[0], label_keys),
            marker=_MARKERS[i % len(_MARKERS)],
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _integer_ticks(ax, sorted(points["batch_size"].unique()))
    ax.set_xlabel("batch size")
    ax.set_ylabel(_J_PER_TOKEN)
    ax.set_title("Energy per output token vs batch size")
    _legend(ax)
    return fig


def energy_vs_length(
    frame: pd.DataFrame, axis: Literal["input", "output"] = "input", *, batch_size: int | None = None
) -> Figure:
    """Plot J per output token against the input (or output) length, log-log, with error bars.

    One line per (model, engine, mode, batch size, other length). Pass `batch_size` to keep one batch
    size.

    Raises:
        ConfigError: `axis` is neither "input" nor "output", no successful run, or a column is missing.
    """
    if axis not in ("input", "output"):
        raise ConfigError(f"axis must be 'input' or 'output', got {axis!r}")
    points = _ok_points(frame, batch_size=batch_size)
    x_key, other = ("input_len", "output_len") if axis == "input" else ("output_len", "input_len")
    fig, ax = _figure()
    keys = (*_MODEL_KEYS, "batch_size", other)
    label_keys = varying(points, keys) or ("batch_size",)
    groups = list(points.groupby(list(keys), sort=True))
    colours = _colours(len(groups))
    for i, (_, unsorted) in enumerate(groups):
        group = unsorted.sort_values(x_key)
        _errorbar(
            ax,
            group[x_key],
            group,
            label=series_label(group.iloc[0], label_keys),
            marker=_MARKERS[i % len(_MARKERS)],
            color=colours[i],
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _integer_ticks(ax, sorted(points[x_key].unique()))
    ax.set_xlabel(f"{axis} length (tokens)")
    ax.set_ylabel(_J_PER_TOKEN)
    ax.set_title(f"Energy per output token vs {axis} length")
    _legend(ax)
    return fig


def phase_split(frame: pd.DataFrame, *, share: bool = False) -> Figure:
    """Stack prefill and decode energy per output token for every configuration (two bars each).

    Configurations are grouped by shape (input/output length), batch size ascending within a group.

    Args:
        frame: The runs frame; needs `prefill_energy_j` and `decode_energy_j`.
        share: Plot each phase's share of the energy (0-1) instead of joules per output token.

    Raises:
        ConfigError: No successful run with both phases, or a required column is missing.
    """
    for column in ("prefill_energy_j", "decode_energy_j"):
        if column not in frame.columns:
            raise ConfigError(f"the runs table has no {column} column: cannot split energy by phase")
    points = _ok_points(frame)
    points = points[np.isfinite(points["prefill_j_per_token"]) & np.isfinite(points["decode_j_per_token"])]
    if points.empty:
        raise ConfigError("no successful run has both a prefill and a decode measurement")
    pre = points["prefill_j_per_token"].to_numpy(float)
    dec = points["decode_j_per_token"].to_numpy(float)
    if share:
        total = pre + dec
        pre, dec = pre / total, dec / total
    group_keys = (*_MODEL_KEYS, *_SHAPE_KEYS)
    shape_index = points.groupby(list(group_keys), sort=False).ngroup().to_numpy()
    x = np.arange(len(points)) + 0.8 * shape_index  # a gap between shapes
    fig, ax = _figure(width=max(7.0, 0.28 * len(points) + 2.0))
    ax.bar(x, pre, width=0.8, label="prefill", color="#4c72b0")
    ax.bar(x, dec, width=0.8, bottom=pre, label="decode", color="#dd8452")
    ax.set_xticks(x, [f"B{b}" for b in points["batch_size"]], fontsize=7, rotation=90)
    # Name each shape once, under its group of bars.
    model_keys = varying(points, _MODEL_KEYS)
    centres, names = [], []
    for _, group in points.groupby(shape_index, sort=True):
        row = group.iloc[0]
        centres.append(float(x[group.index].mean()))
        model = f"{series_label(row, model_keys)}\n" if model_keys else ""
        names.append(f"{model}in {row['input_len']} / out {row['output_len']}")
    shapes_axis = ax.secondary_xaxis("bottom")
    shapes_axis.set_xticks(centres, names, fontsize=7)
    shapes_axis.tick_params(length=0, pad=26)
    shapes_axis.spines["bottom"].set_visible(False)
    shapes_axis.set_xlabel("batch size, grouped by input / output length (tokens)")
    ax.set_ylabel("share of the energy" if share else "GPU J per output token")
    ax.set_title("Prefill and decode energy per configuration")
    ax.legend(fontsize=8)
    return fig


def pareto_points(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> list[int]:
    """Return the indices of the non-dominated points when both `x` and `y` are to be minimised.

    A point is dominated when another is no worse on both axes and better on one. Of exactly equal
    points the first is kept. Points with a NaN or infinite coordinate are ignored.

    Returns:
        Indices into `x`/`y`, in increasing `x` (hence decreasing `y`).

    Raises:
        ConfigError: `x` and `y` differ in length.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ConfigError(f"x and y must be 1-D of equal length, got shapes {xs.shape} and {ys.shape}")
    finite = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    order = finite[np.lexsort((finite, ys[finite], xs[finite]))]  # by x, then y, then index
    kept: list[int] = []
    best_y = np.inf
    for i in order:
        if ys[i] < best_y:
            kept.append(int(i))
            best_y = ys[i]
    return kept


def pareto_frontier(frame: pd.DataFrame) -> Figure:
    """Plot J per output token against latency per output token, joining each shape's frontier.

    Every configuration is a point (colour: input/output shape; marker: model/engine/mode). For each
    shape, the non-dominated points (`pareto_points`: no other point is both cheaper and faster) are
    joined by one line and labelled with their batch size. Shapes are kept apart because they are
    different workloads.

    Raises:
        ConfigError: No successful run with a duration, or a required column is missing.
    """
    points = _ok_points(frame)
    points = points[np.isfinite(points["latency_per_token_s"])]
    if points.empty:
        raise ConfigError("no successful run has a total-phase duration: cannot plot latency")
    fig, ax = _figure()
    shapes = list(points.groupby(list(_SHAPE_KEYS), sort=True))
    colours = _colours(len(shapes))
    configs = sorted({tuple(str(v) for v in row) for row in points[list(_MODEL_KEYS)].to_numpy()})
    markers = {config: _MARKERS[i % len(_MARKERS)] for i, config in enumerate(configs)}
    model_keys = varying(points, _MODEL_KEYS)
    for colour, (shape, group) in zip(colours, shapes, strict=True):
        for config, sub in group.groupby(list(_MODEL_KEYS), sort=True):
            ax.scatter(
                sub["latency_per_token_s"],
                sub["j_per_token"],
                color=colour,
                marker=markers[tuple(str(v) for v in config)],
                s=28,
                alpha=0.8,
                label=(f"{series_label(sub.iloc[0], model_keys)}, " if model_keys else "")
                + f"in {shape[0]}, out {shape[1]}",
            )
        front = group.iloc[pareto_points(group["latency_per_token_s"], group["j_per_token"])]
        ax.plot(front["latency_per_token_s"], front["j_per_token"], color=colour, linewidth=1.2)
        for row in front.itertuples():
            ax.annotate(
                f"B{row.batch_size}",
                (row.latency_per_token_s, row.j_per_token),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=6,
                color=colour,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency per output token (s): batch duration / output length")
    ax.set_ylabel(_J_PER_TOKEN)
    ax.set_title("Energy vs latency per output token (lines: Pareto frontier per shape)")
    _legend(ax)
    return fig


def estimate_bins(estimate: Estimate, *, top: int = 25) -> Figure:
    """Bar chart of a trace estimate's energy per bin, largest first, with the bins' uncertainty.

    Args:
        estimate: A `binned` or `p1` estimate (`physical`, the default, and `parametric` cost each
            request on its own: no per-bin table; the report shows their per-class table instead).
        top: Show this many bins; the rest are summed into one "other bins" bar.

    Raises:
        ConfigError: The estimate has no per-bin table, or `top` < 1.
    """
    import pandas as pd

    if top < 1:
        raise ConfigError(f"top must be ≥ 1, got {top}")
    if not estimate.per_bin:
        raise ConfigError(f"the {estimate.method} estimate has no per-bin table to plot")
    bins = pd.DataFrame(estimate.per_bin).sort_values("energy_j", ascending=False, kind="stable")
    shown = bins.head(top)
    labels = [
        f"in ≤{int(r.input_bin_max)}, out ≤{int(r.output_bin_max)} "
        f"({int(r.requests)} req, B{int(r.batch_size)})"
        for r in shown.itertuples()
    ]
    energy = shown["energy_j"].to_list()
    unc = shown["uncertainty_j"].to_list()
    rest = bins.iloc[top:]
    if len(rest):
        labels.append(f"{len(rest)} other bins ({int(rest['requests'].sum())} req)")
        energy.append(float(rest["energy_j"].sum()))
        unc.append(float(rest["uncertainty_j"].sum()))
    scale, unit = (1e3, "kJ") if max(energy) >= 1e4 else (1.0, "J")
    fig, ax = _figure(width=8.0, height=max(3.0, 0.22 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(
        y,
        np.asarray(energy) / scale,
        xerr=np.asarray(unc) / scale,
        color="#55a868",
        error_kw={"elinewidth": 0.8, "capsize": 2},
    )
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"GPU energy ({unit}); error bars: the bins' uncertainty")
    ax.set_title(
        f"Trace estimate by bin: {estimate.total_kwh:.3g} kWh over {estimate.requests} requests "
        f"({len(bins)} bins, method {estimate.method})",
        fontsize=9,
    )
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Write `fig` as PNG or SVG, chosen by the suffix of `path`, atomically (temporary file + rename).

    Args:
        fig: The figure.
        path: Target file ending in `.png` or `.svg`; parent directories are created.
        dpi: Resolution of PNG output (dots per inch).

    Returns:
        The path written.

    Raises:
        ConfigError: The suffix is not `.png` or `.svg`, or the file cannot be written.
    """
    target = Path(path).expanduser()
    fmt = FIGURE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot save a figure as {target.name!r}: the suffix must be one of {', '.join(FIGURE_FORMATS)}"
        )
    return write_atomically(target, figure_bytes(fig, fmt, dpi=dpi))


def figure_bytes(fig: Figure, fmt: FigureFormat = "png", *, dpi: int = 100) -> bytes:
    """Return `fig` encoded as PNG or SVG, without the creator URL matplotlib would embed."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # matplotlib's default metadata names its website; a report must reference nothing online.
    metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {"Creator": None}
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def _figure(width: float = 7.0, height: float = 4.2) -> tuple[Figure, Axes]:
    """Return a new Agg-backed figure (constrained layout) and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, which="major", alpha=0.3)
    return fig, ax


def _ok_points(
    frame: pd.DataFrame,
    *,
    input_len: int | None = None,
    output_len: int | None = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Return the summary rows with a finite J per output token, filtered; ConfigError when none."""
    points = config_summary(frame)
    points = points[(points["runs"] > 0) & np.isfinite(points["j_per_token"])]
    wanted = {"input_len": input_len, "output_len": output_len, "batch_size": batch_size}
    for key, value in wanted.items():
        if value is not None:
            points = points[points[key] == value]
    if points.empty:
        chosen = ", ".join(f"{k}={v}" for k, v in wanted.items() if v is not None)
        raise ConfigError("no successful run with GPU energy to plot" + (f" with {chosen}" if chosen else ""))
    return points.reset_index(drop=True)


def _errorbar(ax: Axes, x: pd.Series, group: pd.DataFrame, *, label: str, **style: Any) -> None:
    """Draw J per output token with its uncertainty; the lower bar stops above zero for log axes."""
    y = group["j_per_token"].to_numpy(float)
    unc = np.nan_to_num(group["j_per_token_unc"].to_numpy(float))
    lower = np.minimum(unc, 0.95 * y)
    yerr = np.vstack([lower, unc])  # one 2 x N array: a list of arrays warns in matplotlib with numpy 2.3
    ax.errorbar(x.to_numpy(float), y, yerr=yerr, label=label, capsize=3, markersize=4, **style)


def _integer_ticks(ax: Axes, values: list[Any]) -> None:
    """Put ticks at the measured values, labelled as plain integers (not powers)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xticks([float(v) for v in values], [str(int(v)) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _colours(n: int) -> list[Any]:
    """Return `n` distinguishable colours (tab10, then viridis beyond ten)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](i / max(n - 1, 1)) for i in range(n)]


def _legend(ax: Axes) -> None:
    """Add a small legend; a long one goes to the right of the axes, in columns of 20, widening the figure.

    Inside the axes, a legend of dozens of series (every calibration the package bundles: 64 lines against
    output length) is taller than the figure, and constrained layout collapses the axes to fit it.
    """
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) <= 12:
        ax.legend(fontsize=7, ncols=2 if len(handles) > 6 else 1)
        return
    ncols = -(-len(handles) // 20)
    ax.legend(fontsize=6, ncols=ncols, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    from matplotlib.figure import Figure

    fig = ax.figure  # the axes' own figure: `_figure` makes one Figure per plot, never subfigures
    if isinstance(fig, Figure):
        fig.set_size_inches(fig.get_figwidth() + 1.9 * ncols, fig.get_figheight())

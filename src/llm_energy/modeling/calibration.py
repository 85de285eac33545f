"""Calibration data: measured grid points of one configuration, and interpolation between them.

A calibration table has one row per measured point (batch size, input and output length) of one
configuration (model, engine, mode, GPU): the mean over repeats of the per-batch prefill and
decode energy and time, and each one's relative uncertainty (the larger of the meter's bound and
the spread over repeats). Energy is interpolated as *intensive* quantities — prefill joules per
input token and decode joules per generated token — linearly in log(batch), log(input) and
log(output), and clamped at the edges of the measured grid; the caller multiplies by its own
token counts. Points that ran out of memory give the largest feasible batch per shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.errors import ConfigError

_FLOOR = 1e-12
"""Lower bound before taking logs (a derived decode energy can be ~0 within its uncertainty)."""

CALIBRATION_COLUMNS = (
    "batch_size",
    "input_len",
    "output_len",
    "prefill_j",
    "decode_j",
    "prefill_s",
    "decode_s",
    "prefill_rel_unc",
    "decode_rel_unc",
    "runs",
)


def calibration_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Reduce `Store.runs_frame()`-shaped rows of ONE configuration to the calibration table.

    Energies are GPU joules per batch (one repetition); rows with status other than ok are dropped.

    Raises:
        ConfigError: no usable row.
    """
    ok = _energy_source(frame[frame["status"] == "ok"].copy())
    need = ["prefill_energy_j", "decode_energy_j", "prefill_duration_s", "decode_duration_s"]
    ok = ok.dropna(subset=need)
    if ok.empty:
        raise ConfigError("no successful runs with prefill and decode energy to calibrate from")
    ok["prefill_unc_rel"] = ok["prefill_uncertainty_j"] / ok["prefill_energy_j"]
    ok["decode_unc_rel"] = ok["decode_uncertainty_j"] / ok["decode_energy_j"].abs()
    g = ok.groupby(["batch_size", "input_len", "output_len"], as_index=False)
    table = g.agg(
        prefill_j=("prefill_energy_j", "mean"),
        decode_j=("decode_energy_j", "mean"),
        prefill_s=("prefill_duration_s", "mean"),
        decode_s=("decode_duration_s", "mean"),
        prefill_std=("prefill_energy_j", "std"),
        decode_std=("decode_energy_j", "std"),
        prefill_meter=("prefill_unc_rel", "mean"),
        decode_meter=("decode_unc_rel", "mean"),
        runs=("prefill_energy_j", "size"),
    )
    table["prefill_rel_unc"] = np.maximum(
        table["prefill_meter"], (table["prefill_std"] / table["prefill_j"]).fillna(0)
    )
    table["decode_rel_unc"] = np.maximum(
        table["decode_meter"], (table["decode_std"] / table["decode_j"].abs()).fillna(0)
    ).fillna(0)
    table["prefill_rel_unc"] = table["prefill_rel_unc"].fillna(0)
    out = table[list(CALIBRATION_COLUMNS)].astype(float)
    out.attrs["energy_source"] = ok.attrs["energy_source"]
    return out


def _energy_source(ok: pd.DataFrame) -> pd.DataFrame:
    """GPU energy where a GPU was metered; else the CPU figures (a CPU-only or simulated run).

    So the sweep → fit → estimate path works without a GPU; such a table is marked
    `attrs["energy_source"]`.
    """
    ok.attrs["energy_source"] = "gpu"
    gpu = ok.get("prefill_energy_j")
    cpu = [f"{p}_cpu_energy_j" for p in ("prefill", "decode", "total")]
    no_gpu = gpu is None or not (gpu.fillna(0) > 0).any()
    if no_gpu and all(c in ok.columns for c in cpu) and (ok["prefill_cpu_energy_j"].fillna(0) > 0).any():
        for phase in ("prefill", "decode", "total"):
            ok[f"{phase}_energy_j"] = ok[f"{phase}_cpu_energy_j"]
            ok[f"{phase}_uncertainty_j"] = 0.0
        source = ok.get("prefill_cpu_source", pd.Series(["estimated"])).dropna()
        ok.attrs["energy_source"] = (
            f"cpu ({source.iloc[0] if len(source) else 'estimated'}): no GPU was metered"
        )
    return ok


def max_feasible_batches(frame: pd.DataFrame) -> dict[tuple[int, int], int]:
    """Return the largest batch that ran ok per (input_len, output_len) shape."""
    ok = frame[frame["status"] == "ok"]
    out: dict[tuple[int, int], int] = {}
    for (lin, lout), rows in ok.groupby(["input_len", "output_len"]):
        out[(int(lin), int(lout))] = int(rows["batch_size"].max())
    return out


def _interp_axis(grid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (lower index, upper index, weight of upper) for log-linear interpolation, clamped."""
    lg, lx = np.log(grid), np.log(np.clip(x, grid[0], grid[-1]))
    hi = (
        np.clip(np.searchsorted(lg, lx, side="left"), 1, max(len(grid) - 1, 1))
        if len(grid) > 1
        else np.zeros_like(lx, dtype=int)
    )
    lo = np.maximum(hi - 1, 0)
    span = lg[hi] - lg[lo]
    w = np.where(span > 0, (lx - lg[lo]) / np.where(span > 0, span, 1.0), 0.0)
    return lo, hi, w


@dataclass(frozen=True)
class CalibrationGrid:
    """Per-token energy and time on a rectilinear (batch × input × output) grid of measured points.

    Missing grid cells (a point not measured, or out of memory) are filled from the nearest measured
    batch size of the same shape, so interpolation never reads a hole.
    """

    batches: np.ndarray
    inputs: np.ndarray
    outputs: np.ndarray
    prefill_j_per_tok: np.ndarray  # [B, Lin]
    decode_j_per_tok: np.ndarray  # [B, Lin, Lout]
    prefill_s_per_batch: np.ndarray  # [B, Lin]
    decode_s_per_step: np.ndarray  # [B, Lin, Lout]
    prefill_rel_unc: np.ndarray  # [B, Lin]
    decode_rel_unc: np.ndarray  # [B, Lin, Lout]

    @classmethod
    def from_table(cls, table: pd.DataFrame, model: Any = None) -> CalibrationGrid:
        """Build the grid from `calibration_table` rows (decode needs output_len ≥ 2).

        Args:
            table: The calibration table.
            model: A fitted `PhysicalModel`: cells no point measured take its prediction (time, energy and
                its relative uncertainty) instead of the nearest measured batch's value, which on an
                irregular set of points (a `calibrate` plan, an HF grid with holes) is often far off.
        """
        t = table[table["output_len"] >= 2]
        if t.empty:
            raise ConfigError("calibration needs points with output_len ≥ 2 (decode steps)")
        b = np.sort(t["batch_size"].unique())
        i = np.sort(t["input_len"].unique())
        o = np.sort(t["output_len"].unique())
        shape3 = (len(b), len(i), len(o))
        dec = np.full(shape3, np.nan)
        dec_s = np.full(shape3, np.nan)
        dec_u = np.full(shape3, np.nan)
        pre = np.full(shape3, np.nan)
        pre_s = np.full(shape3, np.nan)
        pre_u = np.full(shape3, np.nan)
        for row in t.itertuples():
            bi, ii, oi = (
                np.searchsorted(b, row.batch_size),
                np.searchsorted(i, row.input_len),
                np.searchsorted(o, row.output_len),
            )
            steps = row.output_len - 1
            dec[bi, ii, oi] = row.decode_j / (row.batch_size * steps)
            dec_s[bi, ii, oi] = row.decode_s / steps
            dec_u[bi, ii, oi] = row.decode_rel_unc
            pre[bi, ii, oi] = row.prefill_j / (row.batch_size * row.input_len)
            pre_s[bi, ii, oi] = row.prefill_s
            pre_u[bi, ii, oi] = row.prefill_rel_unc
        if model is not None:
            _fill_from_model(model, (b, i, o), (pre, pre_s, pre_u, dec, dec_s, dec_u))
        for arr in (dec, dec_s, dec_u, pre, pre_s, pre_u):
            _fill_holes(arr, (b.astype(float), i.astype(float), o.astype(float)))
        return cls(
            b.astype(float),
            i.astype(float),
            o.astype(float),
            np.nanmean(pre, axis=2),
            dec,
            np.nanmean(pre_s, axis=2),
            dec_s,
            np.nanmean(pre_u, axis=2),
            dec_u,
        )

    def _interp(
        self, values: np.ndarray, batch: np.ndarray, lin: np.ndarray, lout: np.ndarray | None
    ) -> np.ndarray:
        # Energy per token follows power laws in batch and length (e.g. decode J/token ~ 1/B at small B),
        # so interpolate log(value) linearly in log coordinates.
        out: np.ndarray = np.exp(self._interp_linear(np.log(np.maximum(values, _FLOOR)), batch, lin, lout))
        return out

    def _interp_linear(
        self, values: np.ndarray, batch: np.ndarray, lin: np.ndarray, lout: np.ndarray | None
    ) -> np.ndarray:
        bl, bh, bw = _interp_axis(self.batches, batch)
        il, ih, iw = _interp_axis(self.inputs, lin)
        if lout is None:
            v = values
            flat: np.ndarray = (1 - bw) * ((1 - iw) * v[bl, il] + iw * v[bl, ih]) + bw * (
                (1 - iw) * v[bh, il] + iw * v[bh, ih]
            )
            return flat
        ol, oh, ow = _interp_axis(self.outputs, lout)
        out = np.zeros(np.broadcast(batch, lin, lout).shape)
        for bidx, bwt in ((bl, 1 - bw), (bh, bw)):
            for iidx, iwt in ((il, 1 - iw), (ih, iw)):
                for oidx, owt in ((ol, 1 - ow), (oh, ow)):
                    out = out + bwt * iwt * owt * values[bidx, iidx, oidx]
        return out

    def prefill_j_per_token(self, batch: Any, lin: Any) -> np.ndarray:
        """Prefill GPU joules per input token at (batch, input length)."""
        return self._interp(self.prefill_j_per_tok, np.asarray(batch, float), np.asarray(lin, float), None)

    def decode_j_per_token(self, batch: Any, lin: Any, lout: Any) -> np.ndarray:
        """Decode GPU joules per generated token at (batch, input, output length)."""
        return self._interp(
            self.decode_j_per_tok, np.asarray(batch, float), np.asarray(lin, float), np.asarray(lout, float)
        )

    def prefill_batch_s(self, batch: Any, lin: Any) -> np.ndarray:
        """Prefill seconds for a whole batch."""
        return self._interp(self.prefill_s_per_batch, np.asarray(batch, float), np.asarray(lin, float), None)

    def decode_step_s(self, batch: Any, lin: Any, lout: Any) -> np.ndarray:
        """Seconds per decode step of a batch."""
        return self._interp(
            self.decode_s_per_step, np.asarray(batch, float), np.asarray(lin, float), np.asarray(lout, float)
        )

    def rel_uncertainty(self, batch: Any, lin: Any, lout: Any) -> tuple[np.ndarray, np.ndarray]:
        """Relative uncertainty of (prefill, decode) energy at the point."""
        b, i, o = (np.asarray(x, float) for x in (batch, lin, lout))
        return self._interp(self.prefill_rel_unc, b, i, None), self._interp(self.decode_rel_unc, b, i, o)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (lists)."""
        return {k: getattr(self, k).tolist() for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationGrid:
        """Inverse of `to_dict`."""
        return cls(**{k: np.asarray(data[k], float) for k in cls.__dataclass_fields__})


def _fill_holes(arr: np.ndarray, axes: tuple[np.ndarray, ...]) -> None:
    """Fill NaN cells in place, interpolating along each axis in turn.

    log(value) is interpolated linearly in log(coordinate) between the filled cells of the same line
    (clamped at the ends); any cell still empty takes the mean.
    """
    for axis, coords in enumerate(axes):
        moved = np.moveaxis(arr, axis, 0)
        for idx in np.ndindex(moved.shape[1:]):
            col = moved[(slice(None), *idx)]
            good = np.flatnonzero(~np.isnan(col))
            if 0 < len(good) < len(col):
                lx = np.log(coords)
                col[:] = np.exp(np.interp(lx, lx[good], np.log(np.maximum(col[good], _FLOOR))))
    if np.isnan(arr).any():
        arr[np.isnan(arr)] = np.nanmean(arr) if not np.isnan(arr).all() else 0.0


def _fill_from_model(model: Any, axes: tuple[np.ndarray, ...], arrays: tuple[np.ndarray, ...]) -> None:
    """Fill the unmeasured cells of (prefill J/token, s, unc, decode J/token, s/step, unc) from `model`."""
    pre, pre_s, pre_u, dec, dec_s, dec_u = arrays
    hole = np.isnan(dec)
    if not hole.any():
        return
    bb, ii, oo = np.meshgrid(*(a.astype(float) for a in axes), indexing="ij")
    b, i, o = bb[hole], ii[hole], oo[hole]
    cost = model.batch_cost(b, i, o)
    steps = np.maximum(o - 1, 1)
    rel = model.errors.relative(model.coverage.octaves_outside(b, i, o))
    pre[hole] = cost.prefill_j / (b * i)
    pre_s[hole] = cost.prefill_s
    pre_u[hole] = rel
    dec[hole] = cost.decode_j / (b * steps)
    dec_s[hole] = cost.decode_s / steps
    dec_u[hole] = rel

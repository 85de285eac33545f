"""Fit the physical model to a calibration table and measure its error on points it was not fitted on.

* Coefficients: non-negative least squares on relative residuals (each row divided by its measured value, so
  a 10 ms point and a 10 s point weigh alike), time and energy apart, prefill and decode apart.
* Cross-validated error: leave-one-out over **every** calibration point (refit without it, predict its total
  energy), reported as mean, max and rms; the rms is the model's 1-σ inside the calibrated range.
* Extrapolation: the table is cut at each input length (and each batch size) in turn, the model fitted on the
  smaller side predicts the larger, and the error per octave of distance gives how fast the uncertainty widens
  outside the calibrated range (never less than `MIN_PER_OCTAVE`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.errors import ConfigError
from llm_energy.modeling.physical import (
    Coefficients,
    Coverage,
    ErrorModel,
    PhysicalModel,
    ShapeConstants,
    causal_pairs,
    decode_features,
    prefill_features,
)

MIN_PER_OCTAVE = 0.03
"""Floor of the uncertainty's growth per octave outside the calibrated range (3%): a handful of points cannot
show that extrapolation is free."""

MIN_POINTS = 5
"""Points (with output ≥ 2) a fit needs: one more than the decode phase's coefficients."""


def _nnls_rel(features: np.ndarray, target: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
    """Least squares on relative residuals with each coefficient ≥ its lower bound (0 unless given)."""
    from scipy.optimize import (
        lsq_linear,
    )  # imported here: estimate never fits, and scipy.optimize loads slowly

    scale = 1.0 / np.maximum(np.abs(target), 1e-12)
    # Columns differ by ~15 orders of magnitude (FLOPs vs passes): normalise them so the solver is well
    # conditioned; a bound on a coefficient scales with its column.
    norm = np.abs(features * scale[:, None]).max(axis=0)
    live = norm > 0  # a term that is zero on every row (experts of a dense model) keeps coefficient 0
    out = np.zeros(features.shape[1])
    lb = np.zeros(int(live.sum())) if lower is None else np.asarray(lower, float)[live] * norm[live]
    x = features[:, live] * scale[:, None] / norm[live]
    if len(lb) == 1:  # bvls needs two columns; one bounded column is a clipped ratio
        out[live] = max(float(np.dot(x[:, 0], target * scale) / np.dot(x[:, 0], x[:, 0])), lb[0]) / norm[live]
        return out
    res = lsq_linear(x, target * scale, bounds=(lb, np.full(len(lb), np.inf)), method="bvls")
    out[live] = res.x / norm[live]
    return out


def time_floors(
    peak_flops: float | None, bandwidth_bps: float | None, idle_power_w: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lower bounds of the time coefficients: no term runs faster than the GPU's published peak.

    Without them a term the calibration barely excites (attention below ~8k tokens is a few % of prefill) can
    take an unphysical rate, and long contexts, where it dominates, come out low.
    """
    f = 1.0 / peak_flops if peak_flops else 0.0
    b = 1.0 / bandwidth_bps if bandwidth_bps else 0.0
    return np.array([0.0, f, f]), np.array([0.0, b, 0.0, b]), idle_power_w


def _phase_rows(
    table: pd.DataFrame, shape: ShapeConstants, chunk_tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    b, i, o = (table[c].to_numpy(float) for c in ("batch_size", "input_len", "output_len"))
    passes = np.maximum(1.0, np.ceil(b * i / chunk_tokens))
    pre = prefill_features(shape, b * i, b * causal_pairs(i), passes)
    dec = decode_features(shape, b, b * (i + o / 2))
    return pre, dec, o - 1, b


Floors = tuple[np.ndarray, np.ndarray, float]


def _fit_coefficients(
    table: pd.DataFrame, shape: ShapeConstants, chunk_tokens: int, floors: Floors
) -> tuple[Coefficients, Coefficients]:
    pre, dec, steps, _ = _phase_rows(table, shape, chunk_tokens)
    idle_w = floors[2]
    # A term never draws less than the idle board while it runs: its J per unit ≥ idle W × its s per unit.
    pt = _nnls_rel(pre, table["prefill_s"].to_numpy(float), floors[0])
    dt = _nnls_rel(dec, table["decode_s"].to_numpy(float) / steps, floors[1])
    p = Coefficients(
        tuple(pt.tolist()), tuple(_nnls_rel(pre, table["prefill_j"].to_numpy(float), idle_w * pt).tolist())
    )
    d = Coefficients(
        tuple(dt.tolist()),
        tuple(_nnls_rel(dec, table["decode_j"].to_numpy(float) / steps, idle_w * dt).tolist()),
    )
    return p, d


def _predict_total(
    p: Coefficients, d: Coefficients, table: pd.DataFrame, shape: ShapeConstants, chunk_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    pre, dec, steps, _ = _phase_rows(table, shape, chunk_tokens)
    ps, pj = p.apply(pre)
    ds, dj = d.apply(dec)
    return ps + steps * ds, pj + steps * dj


def usable(table: pd.DataFrame) -> pd.DataFrame:
    """Rows the physical model can be fitted on: decode steps, positive finite energy and time."""
    cols = ["prefill_j", "decode_j", "prefill_s", "decode_s"]
    t = table[table["output_len"] >= 2]
    finite = np.isfinite(t[cols].to_numpy(float)).all(axis=1) & (t[cols].to_numpy(float) > 0).all(axis=1)
    return t[finite].reset_index(drop=True)


def leave_one_out(
    table: pd.DataFrame, shape: ShapeConstants, chunk_tokens: int, floors: Floors
) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors (energy, time) of each point's total when predicted by a fit on all the others."""
    e_err, t_err = [], []
    for k in range(len(table)):
        rest = table.drop(index=table.index[k])
        p, d = _fit_coefficients(rest, shape, chunk_tokens, floors)
        s, j = _predict_total(p, d, table.iloc[[k]], shape, chunk_tokens)
        row = table.iloc[k]
        e_err.append(float(j[0]) / (row["prefill_j"] + row["decode_j"]) - 1)
        t_err.append(float(s[0]) / (row["prefill_s"] + row["decode_s"]) - 1)
    return np.asarray(e_err), np.asarray(t_err)


def extrapolation_per_octave(
    table: pd.DataFrame, shape: ShapeConstants, chunk_tokens: int, floors: Floors
) -> dict[str, Any]:
    """Error per octave when the model fitted below a cut predicts the points above it (input, then batch)."""
    ratios: list[float] = []
    cuts: list[dict[str, float]] = []
    for col in ("input_len", "batch_size"):
        values = np.sort(table[col].unique())
        for cut in values[1:-1]:
            train, test = table[table[col] <= cut], table[table[col] > cut]
            # A cut must leave every term identifiable on its side (≥ 3 batches and inputs, ≥ 2 points per
            # coefficient), or it measures an under-determined fit, not extrapolation.
            if (
                len(train) < 2 * MIN_POINTS
                or train["input_len"].nunique() < 3
                or train["batch_size"].nunique() < 3
            ):
                continue
            p, d = _fit_coefficients(train, shape, chunk_tokens, floors)
            _, j = _predict_total(p, d, test, shape, chunk_tokens)
            err = j / (test["prefill_j"] + test["decode_j"]).to_numpy(float) - 1
            octaves = np.log2(test[col].to_numpy(float) / cut)
            far = octaves >= 0.5  # a point a hair beyond the cut says nothing about the rate per octave
            ratios.extend(np.abs(err[far]) / octaves[far])
            cuts.append(
                {
                    "axis_" + col: float(cut),
                    "points": float(len(test)),
                    "rms_rel_error": float(np.sqrt(np.mean(err**2))),
                    "max_octaves": float(octaves.max()),
                }
            )
    per_octave = float(np.sqrt(np.mean(np.square(ratios)))) if ratios else 0.0
    return {"per_octave": max(per_octave, MIN_PER_OCTAVE), "measured_per_octave": per_octave, "cuts": cuts}


def _stats(err: np.ndarray) -> dict[str, float]:
    a = np.abs(err)
    return {
        "points": float(len(err)),
        "mean_abs_rel_error": float(a.mean()),
        "max_abs_rel_error": float(a.max()),
        "rms_rel_error": float(np.sqrt(np.mean(err**2))),
    }


def fit_physical(
    table: pd.DataFrame,
    shape: ShapeConstants,
    *,
    idle_power_w: float,
    kv_capacity_tokens: float,
    max_num_seqs: int | None,
    prefill_chunk_tokens: int = 8192,
    peak_flops: float | None = None,
    bandwidth_bps: float | None = None,
    cross_validate: bool = True,
) -> tuple[PhysicalModel, dict[str, Any]]:
    """Fit the model on `calibration_table` rows; return it and its fit report (LOO, extrapolation cuts).

    Raises:
        ConfigError: fewer than `MIN_POINTS` usable points, or a single input length or batch size.
    """
    t = usable(table)
    if len(t) < MIN_POINTS:
        raise ConfigError(
            f"the physical model needs ≥ {MIN_POINTS} calibration points with output ≥ 2 and positive energy "
            f"and time, got {len(t)}"
        )
    if t["input_len"].nunique() < 2 or t["batch_size"].nunique() < 2:
        raise ConfigError("the physical model needs ≥ 2 input lengths and ≥ 2 batch sizes to fit its terms")
    floors = time_floors(peak_flops, bandwidth_bps, idle_power_w)
    p, d = _fit_coefficients(t, shape, prefill_chunk_tokens, floors)
    report: dict[str, Any] = {}
    cv_rel, per_octave = 0.0, MIN_PER_OCTAVE
    if cross_validate:
        e_err, t_err = leave_one_out(t, shape, prefill_chunk_tokens, floors)
        report["loo_energy"] = _stats(e_err)
        report["loo_time"] = _stats(t_err)
        report["loo_energy_errors"] = [round(float(x), 5) for x in e_err]
        cv_rel = report["loo_energy"]["rms_rel_error"]
        report["extrapolation"] = extrapolation_per_octave(t, shape, prefill_chunk_tokens, floors)
        per_octave = report["extrapolation"]["per_octave"]
    meter = (t["prefill_rel_unc"] * t["prefill_j"] + t["decode_rel_unc"] * t["decode_j"]) / (
        t["prefill_j"] + t["decode_j"]
    )
    ctx = t["input_len"] + t["output_len"]
    coverage = Coverage(_span(t["input_len"]), _span(t["output_len"]), _span(t["batch_size"]), _span(ctx))
    errors = ErrorModel(
        cv_rel=cv_rel,
        meter_rel=float(np.median(meter)),
        per_octave=per_octave,
        cv={k: v for k, v in report.get("loo_energy", {}).items()},
    )
    model = PhysicalModel(
        shape, p, d, idle_power_w, kv_capacity_tokens, max_num_seqs, prefill_chunk_tokens, coverage, errors
    )
    return model, report


def _span(col: pd.Series) -> tuple[float, float]:
    return float(col.min()), float(col.max())


def kv_capacity_from_memory(
    shape: ShapeConstants, memory_bytes: float, *, utilisation: float = 0.9, reserve_fraction: float = 0.08
) -> float:
    """KV tokens a GPU holds: its memory × the engine's utilisation − weights − activations/graphs reserve.

    The reserve (8% of memory) reproduces the KV blocks vLLM 0.25.1 reported on the H100 (25,756 blocks of 16
    tokens for Llama-3.1-8B shapes at utilisation 0.9): used only when the engine's own figure is unknown.
    """
    free = memory_bytes * (utilisation - reserve_fraction) - shape.weight_bytes
    return max(math.floor(free / shape.kv_bytes_per_token), 0)


Predictor = Callable[[pd.DataFrame], np.ndarray]

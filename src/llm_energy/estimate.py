"""Estimate the energy of a real trace from an `EnergyProfile`: kWh, J/request, J/token, CO2, cost.

Each request is run, in the estimate, in a batch of equal requests: at `batch_size` when given, else at the
largest batch the engine runs at its shape (the physical model: KV capacity and max_num_seqs; the grid
models: the largest batch the calibration ran for it, the seed study's choice). The method is any model of
`modeling.models.MODELS` (default `physical`). The trace is read in chunks and accumulated, so its size is
bounded by time, not memory (models that bin the whole trace, `binned` and `p1`, gather it first).
Quantiles of the per-request energy come from a log histogram (0.5% wide bins). The FLOPs estimate is
computed beside it, with its ratio. Every estimate counts the requests **and the energy** outside the
calibrated range, and its uncertainty widens there (`physical.ErrorModel`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_energy.carbon import Footprint
from llm_energy.errors import ConfigError
from llm_energy.modeling.bins import log_bins
from llm_energy.modeling.models import FIXED_BIN_CAPS, MODELS, FlopsEnergy, RequestEstimate, model_for
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.units import j_to_kwh

METHODS: tuple[str, ...] = tuple(MODELS)

FIXED_BINS = log_bins(*FIXED_BIN_CAPS)
"""Log bins (2 per octave) fixed in advance, so every trace falls into the same bins."""

CLASS_EDGES = (1024, 8192, 32768)
"""Input-length classes of the per-class error bars: ≤ 1k, ≤ 8k, ≤ 32k, longer."""
CLASS_NAMES = ("input ≤ 1k", "input 1k–8k", "input 8k–32k", "input > 32k")

_HIST_LO, _HIST_HI, _HIST_BINS = 1e-4, 1e8, 5600
"""Per-request energy histogram: log-spaced, 1e-4 J to 1e8 J, each bin 0.5% wide."""


@dataclass(frozen=True)
class Estimate:
    """Energy of a trace under one profile and method (GPU energy; joules unless the name says)."""

    method: str
    profile: str
    requests: int
    dropped: int
    total_j: float
    uncertainty_j: float
    prefill_j: float
    decode_j: float
    output_tokens: int
    input_tokens: int
    request_mean_j: float
    request_p50_j: float
    request_p90_j: float
    flops_j: float
    flops_half_util_j: float
    per_bin: list[dict[str, Any]] = field(default_factory=list)
    outside_calibration: int = 0
    """Requests outside the calibrated range (lengths, context or batch)."""
    outside_energy_j: float = 0.0
    """Estimated energy of those requests."""
    per_class: list[dict[str, Any]] = field(default_factory=list)
    """Requests, energy and 1-σ per input-length class (`CLASS_NAMES`)."""
    requests_total: int = 0
    """Requests in the trace (kept + dropped)."""
    duration_s: float | None = None
    carbon_g_per_kwh: float | None = None
    price_per_kwh: float | None = None
    carbon_source: str | None = None
    """Where the carbon intensity comes from (`given`, or a bundled region with its year and source)."""

    @property
    def total_kwh(self) -> float:
        """Total energy in kWh."""
        return j_to_kwh(self.total_j)

    @property
    def j_per_output_token(self) -> float:
        """Joules per generated token (prefill energy included)."""
        return self.total_j / self.output_tokens if self.output_tokens else float("nan")

    @property
    def prefill_share(self) -> float:
        """Fraction of the energy spent in prefill."""
        return self.prefill_j / self.total_j if self.total_j else float("nan")

    @property
    def outside_energy_share(self) -> float:
        """Fraction of the energy estimated outside the calibrated range (extrapolated)."""
        return self.outside_energy_j / self.total_j if self.total_j else 0.0

    @property
    def outside_request_share(self) -> float:
        """Fraction of the requests outside the calibrated range."""
        return self.outside_calibration / self.requests if self.requests else 0.0

    @property
    def scaled_total_j(self) -> float:
        """Total scaled to every request of the trace (not `total_j` only when requests were dropped)."""
        return self.total_j * self.requests_total / self.requests if self.requests else float("nan")

    @property
    def flops_ratio(self) -> float:
        """Estimated energy / naive FLOPs energy (how badly FLOPs underestimate)."""
        return self.total_j / self.flops_j if self.flops_j else float("nan")

    @property
    def co2_g(self) -> float | None:
        """Grams of CO2 at the given grid intensity."""
        return None if self.carbon_g_per_kwh is None else self.total_kwh * self.carbon_g_per_kwh

    @property
    def cost(self) -> float | None:
        """Cost at the given price per kWh."""
        return None if self.price_per_kwh is None else self.total_kwh * self.price_per_kwh

    def footprint(self) -> Footprint:
        """KWh, kgCO2 and cost per 1,000 requests, and per day at the trace's own rate (when timed)."""
        rate = self.requests / self.duration_s if self.duration_s else 0.0
        mean_j = self.total_j / self.requests if self.requests else 0.0
        return Footprint(mean_j, rate, self.carbon_g_per_kwh, self.price_per_kwh)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (derived figures included)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in (
            "total_kwh",
            "j_per_output_token",
            "prefill_share",
            "flops_ratio",
            "co2_g",
            "cost",
            "outside_energy_share",
            "outside_request_share",
            "scaled_total_j",
        ):
            out[k] = getattr(self, k)
        out["footprint"] = self.footprint().to_dict()
        return out


class _Accumulator:
    """Sums over chunks of per-request estimates (memory independent of the trace's length)."""

    def __init__(self) -> None:
        self.n = self.dropped = self.outside = 0
        self.total = self.unc = self.pre = self.dec = self.out_j = self.flops = 0.0
        self.in_tok = self.out_tok = 0
        self.hist = np.zeros(_HIST_BINS + 2, dtype=np.int64)
        self.classes = np.zeros((len(CLASS_NAMES), 4))  # requests, energy, uncertainty, outside energy
        self.per_bin: list[dict[str, Any]] = []

    def add(self, lin: np.ndarray, lout: np.ndarray, r: RequestEstimate, flops_j: float) -> None:
        k = r.kept
        self.dropped += int((~k).sum())
        lin, lout = lin[k], lout[k]
        total, unc, octv = r.total_j[k], r.uncertainty_j[k], r.octaves_outside[k]
        out = octv > 0
        self.n += int(k.sum())
        self.total += float(total.sum())
        self.unc += float(unc.sum())
        self.pre += float(r.prefill_j[k].sum())
        self.dec += float(r.decode_j[k].sum())
        self.in_tok += int(lin.sum())
        self.out_tok += int(lout.sum())
        self.outside += int(out.sum())
        self.out_j += float(total[out].sum())
        self.flops += flops_j
        edges = np.log(np.clip(total, _HIST_LO, _HIST_HI) / _HIST_LO) / np.log(_HIST_HI / _HIST_LO)
        np.add.at(self.hist, np.clip((edges * _HIST_BINS).astype(np.int64) + 1, 0, _HIST_BINS + 1), 1)
        cls = np.searchsorted(np.asarray(CLASS_EDGES), lin, side="left")
        for col, values in enumerate((np.ones_like(total), total, unc, np.where(out, total, 0.0))):
            self.classes[:, col] += np.bincount(cls, weights=values, minlength=len(CLASS_NAMES))
        if r.per_bin is not None:
            self.per_bin.extend(r.per_bin.to_dict("records"))

    def quantile(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        cum = np.cumsum(self.hist)
        idx = int(np.searchsorted(cum, q * cum[-1]))
        frac = (min(max(idx, 1), _HIST_BINS) - 0.5) / _HIST_BINS
        return float(_HIST_LO * (_HIST_HI / _HIST_LO) ** frac)

    def per_class(self) -> list[dict[str, Any]]:
        return [
            {
                "class": name,
                "requests": int(c[0]),
                "energy_j": float(c[1]),
                "uncertainty_j": float(c[2]),
                "rel_uncertainty": float(c[2] / c[1]) if c[1] else None,
                "outside_energy_share": float(c[3] / c[1]) if c[1] else None,
            }
            for name, c in zip(CLASS_NAMES, self.classes, strict=True)
            if c[0]
        ]


def _checked(profile: EnergyProfile, lin: np.ndarray, lout: np.ndarray, first_row: int) -> None:
    """Refuse requests no engine runs: non-finite, < 1 token, or beyond the model's context (row named)."""
    bad = np.flatnonzero(~np.isfinite(lin) | ~np.isfinite(lout))
    if bad.size:
        raise ConfigError(f"row {first_row + int(bad[0]) + 1}: token counts must be finite numbers")
    if profile.physical is not None:
        profile.physical.check_lengths(lin, lout, first_row)


def _gathered(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    parts = list(chunks)
    if parts:
        yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def estimate_chunks(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    profile: EnergyProfile,
    *,
    method: str = "physical",
    batch_size: int | None = None,
    strict_range: bool = False,
    duration_s: float | None = None,
    carbon_g_per_kwh: float | None = None,
    price_per_kwh: float | None = None,
    profile_name: str = "",
    carbon_source: str | None = None,
    progress: Any = None,
) -> Estimate:
    """Estimate a trace given as chunks of (input tokens, output tokens), accumulating chunk by chunk.

    Args:
        chunks: (input tokens, output tokens) arrays, one pair per chunk, in trace order.
        profile: The fitted profile.
        method: A model of `MODELS` (default `physical`).
        batch_size: Run every request at this batch (default: the model's own choice).
        strict_range: Refuse (ConfigError) when any request lies outside the calibrated range.
        duration_s: The trace's span, for per-day figures.
        carbon_g_per_kwh: Grid intensity for CO2 (None: not computed).
        price_per_kwh: Electricity price (None: not computed).
        profile_name: How the profile is named in the output (default: its description).
        carbon_source: Where the intensity comes from.
        progress: Called with the number of requests done after each chunk (or None).

    Raises:
        ConfigError: unknown method, an empty trace, a non-positive batch size, a request no engine runs
            (its row named), or with `strict_range` a request outside the calibration.
    """
    model = model_for(profile, method)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be ≥ 1, got {batch_size}")
    try:
        flops: FlopsEnergy | None = FlopsEnergy(profile)
    except ConfigError:  # no architecture or no published peaks for this profile: no FLOPs baseline
        flops = None
    acc, row = _Accumulator(), 0
    stream = chunks if model.streams else _gathered(chunks)
    for lin_raw, lout_raw in stream:
        lin, lout = np.asarray(lin_raw, float), np.asarray(lout_raw, float)
        _checked(profile, lin, lout, row)
        r = model.request_energy(lin, lout, batch_size)
        if strict_range and (r.octaves_outside[r.kept] > 0).any():
            k = int(np.flatnonzero(r.kept & (r.octaves_outside > 0))[0])
            raise ConfigError(
                f"row {row + k + 1}: {int(lin[k])} input / {int(lout[k])} output tokens at batch "
                f"{r.batch_size[k]:.0f} is outside the calibrated range (--strict-range)"
            )
        fj = float(flops.request_energy(lin[r.kept], lout[r.kept]).total_j.sum()) if flops else float("nan")
        acc.add(lin, lout, r, fj)
        row += lin.size
        if progress is not None:
            progress(row)
    if row == 0:
        raise ConfigError("the trace is empty")
    return Estimate(
        method=model.name,
        profile=profile_name or profile.describe(),
        requests=acc.n,
        dropped=acc.dropped,
        total_j=acc.total,
        uncertainty_j=acc.unc,
        prefill_j=acc.pre,
        decode_j=acc.dec,
        output_tokens=acc.out_tok,
        input_tokens=acc.in_tok,
        request_mean_j=acc.total / acc.n if acc.n else float("nan"),
        request_p50_j=acc.quantile(0.5),
        request_p90_j=acc.quantile(0.9),
        flops_j=acc.flops,
        flops_half_util_j=2 * acc.flops,
        per_bin=acc.per_bin,
        outside_calibration=acc.outside,
        outside_energy_j=acc.out_j,
        per_class=acc.per_class(),
        requests_total=row,
        duration_s=duration_s,
        carbon_g_per_kwh=carbon_g_per_kwh,
        price_per_kwh=price_per_kwh,
        carbon_source=carbon_source,
    )


def estimate_trace(
    input_tokens: np.ndarray, output_tokens: np.ndarray, profile: EnergyProfile, **kwargs: Any
) -> Estimate:
    """Estimate the trace's GPU energy with `profile` (arguments as `estimate_chunks`)."""
    lin, lout = np.asarray(input_tokens, float), np.asarray(output_tokens, float)
    return estimate_chunks([(lin, lout)] if lin.size else [], profile, **kwargs)


def batch_for_rate(
    profile: EnergyProfile, rate_per_s: float, input_tokens: np.ndarray, output_tokens: np.ndarray
) -> int:
    """The batch an online server settles at for arrivals at `rate_per_s` (Little's law, a model).

    With continuous batching, requests in flight B = rate × time per request, and the time per request
    at batch B is prefill + (L_out − 1) decode steps at B, read from the profile's grid at the trace's
    mean lengths. Iterates B ← rate × T(B) to its fixed point, within [1, largest calibrated batch].
    A stand-in for measuring the online run (`replay`), which the estimate says it is.

    Raises:
        ConfigError: a rate ≤ 0.
    """
    if not rate_per_s > 0:
        raise ConfigError(f"online rate must be > 0 requests/s, got {rate_per_s}")
    lin, lout = float(np.mean(input_tokens)), float(np.mean(output_tokens))
    if profile.physical is not None:
        return _physical_batch_for_rate(profile, rate_per_s, lin, lout)
    grid = profile.grid
    b_max = float(grid.batches[-1])
    batch = 1.0
    for _ in range(100):
        per_request_s = float(grid.prefill_batch_s(batch, lin)) / batch * 1.0 + max(lout - 1, 0) * float(
            grid.decode_step_s(batch, lin, max(lout, 2))
        )
        new = min(max(rate_per_s * per_request_s, 1.0), b_max)
        if abs(new - batch) < 1e-3:
            break
        batch = new
    return max(1, round(batch))


def _physical_batch_for_rate(profile: EnergyProfile, rate_per_s: float, lin: float, lout: float) -> int:
    """Little's law on the physical model: B ← rate × (prefill at B / B + decode at B), within capacity."""
    m = profile.physical
    assert m is not None
    b_max = float(m.max_batch(lin, lout))
    batch = 1.0
    for _ in range(100):
        cost = m.batch_cost(batch, lin, lout)
        per_request_s = float(cost.prefill_s) / batch + float(cost.decode_s)
        new = min(max(rate_per_s * per_request_s, 1.0), b_max)
        if abs(new - batch) < 1e-3:
            break
        batch = new
    return max(1, round(batch))

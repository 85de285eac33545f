"""Estimate the energy of a real trace from an `EnergyProfile`: kWh, J/request, J/token, CO2, cost.

Requests are run, in the estimate, as homogeneous offline batches: at `batch_size` when given, else at
the largest batch the calibration ran for their shape (the seed study's choice). Three methods:
`binned` (default: log-spaced bins, representative lengths = the requests' means), `p1` (the seed
study's power-of-two rule, requests above 8192 in / 512 out dropped and counted) and `parametric`
(the fitted phase equations, per request). The FLOPs estimate (at peak, and at 50% utilisation) is
always computed beside it, with its ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from llm_energy.architectures import load_architecture
from llm_energy.carbon import Footprint
from llm_energy.errors import ConfigError
from llm_energy.modeling.binned import BinnedModel, request_energy_at
from llm_energy.modeling.bins import log_bins
from llm_energy.modeling.flops import FlopsModel, gpu_spec
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.units import j_to_kwh

Method = Literal["binned", "p1", "parametric"]
METHODS: tuple[str, ...] = ("binned", "p1", "parametric")

FIXED_BINS = log_bins(131072, 16384)
"""Log bins (2 per octave) fixed in advance, so streamed chunks fall into the same bins."""


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
        for k in ("total_kwh", "j_per_output_token", "prefill_share", "flops_ratio", "co2_g", "cost"):
            out[k] = getattr(self, k)
        out["footprint"] = self.footprint().to_dict()
        return out


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1])])


def estimate_trace(
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    profile: EnergyProfile,
    *,
    method: str = "binned",
    batch_size: int | None = None,
    duration_s: float | None = None,
    carbon_g_per_kwh: float | None = None,
    price_per_kwh: float | None = None,
    profile_name: str = "",
    carbon_source: str | None = None,
) -> Estimate:
    """Estimate the trace's GPU energy with `profile`.

    Raises:
        ConfigError: unknown method, an empty trace, a non-positive batch size.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be ≥ 1, got {batch_size}")
    lin = np.asarray(input_tokens, float)
    lout = np.asarray(output_tokens, float)
    if lin.size == 0:
        raise ConfigError("the trace is empty")
    binned = BinnedModel(
        profile.grid,
        profile.feasible,
        method="p1" if method == "p1" else "log",
        bins=None if method == "p1" else FIXED_BINS,
    )
    result = binned.estimate(lin, lout, batch_size)
    kept = result.kept
    pre, dec, unc = result.prefill_j, result.decode_j, result.uncertainty_j
    if method == "parametric":
        # Batch per request: the binned model's choice for its bin, then the fitted equations per request.
        assert result.batch_size is not None
        batch = np.nan_to_num(result.batch_size, nan=1.0)  # dropped requests: excluded from the sums below
        pre, dec = profile.parametric.request_energy_j(batch, lin, lout)
        rel = max(profile.parametric.prefill_rms_rel_error, profile.parametric.decode_rms_rel_error)
        _, _, grid_unc = request_energy_at(profile.grid, batch, lin, lout)
        unc = rel * (pre + dec) + grid_unc
    per_request = pre + dec
    try:
        flops_model = FlopsModel(load_architecture(profile.model), gpu_spec(profile.gpu_name))
        fp, fd = flops_model.estimate(lin[kept], lout[kept])
        flops_j = float(fp.sum() + fd.sum())
    except ConfigError:  # no architecture or no published peaks for this profile: no FLOPs baseline
        flops_j = float("nan")
    values = per_request[kept]
    return Estimate(
        method=method,
        profile=profile_name or profile.describe(),
        requests=int(kept.sum()),
        dropped=int((~kept).sum()),
        total_j=float(values.sum()),
        uncertainty_j=float(unc[kept].sum()),
        prefill_j=float(pre[kept].sum()),
        decode_j=float(dec[kept].sum()),
        output_tokens=int(lout[kept].sum()),
        input_tokens=int(lin[kept].sum()),
        request_mean_j=float(values.mean()) if values.size else float("nan"),
        request_p50_j=_weighted_quantile(values, np.ones_like(values), 0.5) if values.size else float("nan"),
        request_p90_j=_weighted_quantile(values, np.ones_like(values), 0.9) if values.size else float("nan"),
        flops_j=flops_j,
        flops_half_util_j=2 * flops_j,
        outside_calibration=int(
            (
                kept
                & (
                    (lin > profile.grid.inputs[-1])
                    | (lout > profile.grid.outputs[-1])
                    | (lin < profile.grid.inputs[0])
                )
            ).sum()
        ),
        per_bin=result.bins.to_dict("records") if result.bins is not None and method != "parametric" else [],
        duration_s=duration_s,
        carbon_g_per_kwh=carbon_g_per_kwh,
        price_per_kwh=price_per_kwh,
        carbon_source=carbon_source,
    )


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

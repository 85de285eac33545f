"""The records of an online-vs-offline comparison: the request set, each side's energy, the comparison.

Kept apart from `validation.online`, which loads, measures and compares them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Comparison", "EnergySide", "RequestSet"]


@dataclass(frozen=True)
class RequestSet:
    """The requests of one stored serving run that an offline engine can run again.

    Attributes:
        run_id: The serving run.
        input_tokens: Prompt lengths, in request order.
        output_tokens: Output tokens received online (the offline run generates exactly these).
        online_j: Each request's own attributed joules online.
        excluded: Requests left out: no output token received (nothing to run offline) or no joules.
        excluded_online_j: Online joules of the excluded requests.
        max_concurrency: Most requests in flight at once online (sent, not yet done).
        span_s: First send to last completion of the run, seconds.
        online_uncertainty_j: Meter bound of the attributed total (see `UPDATE_PERIOD_S`); NaN when
            the run stored no power series.
        run: The stored run's row (server, model, partial, window figures, ...).
    """

    run_id: str
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    online_j: np.ndarray
    excluded: int
    excluded_online_j: float
    max_concurrency: int
    span_s: float
    online_uncertainty_j: float
    run: Mapping[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Requests compared."""
        return len(self.input_tokens)


@dataclass(frozen=True)
class EnergySide:
    """Energy of the request set on one side (online or offline), GPU joules, idle included.

    Attributes:
        label: What was measured or modelled, in words.
        kind: `measured` or `modelled`.
        total_j: Joules of all requests.
        uncertainty_j: Bound (measured: meter; modelled: the profile's) on `total_j`; NaN if unknown.
        requests: Requests counted.
        output_tokens: Output tokens of those requests.
        mean_j: Mean joules per request.
        p50_j: Median joules per request.
        p90_j: 90th percentile of joules per request.
        window: Which window the energy covers and how it reaches single requests.
    """

    label: str
    kind: Literal["measured", "modelled"]
    total_j: float
    uncertainty_j: float
    requests: int
    output_tokens: int
    mean_j: float
    p50_j: float
    p90_j: float
    window: str

    @property
    def mean_uncertainty_j(self) -> float:
        """Bound on the mean per request (the total's bound over the requests)."""
        return self.uncertainty_j / self.requests if self.requests else math.nan

    @property
    def j_per_output_token(self) -> float:
        """Joules per output token (prefill included)."""
        return self.total_j / self.output_tokens if self.output_tokens else math.nan

    @property
    def j_per_output_token_uncertainty(self) -> float:
        """Bound on `j_per_output_token`."""
        return self.uncertainty_j / self.output_tokens if self.output_tokens else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation, derived figures included."""
        out = asdict(self)
        for name in ("mean_uncertainty_j", "j_per_output_token", "j_per_output_token_uncertainty"):
            out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class Comparison:
    """Online vs offline energy of one request set.

    Attributes:
        run_id: The serving run.
        server: Its server (`transformers`, `vllm`, `external`).
        model: Its model.
        online: The online side.
        offline: The offline side.
        batch_size: Offline batch size (continuous: most sequences at once).
        max_concurrency: Most requests in flight at once online.
        excluded: Online requests left out (see `RequestSet`).
        ratio: Online / offline total (= ratio of J/request means and of J/output token).
        ratio_low: Lowest ratio within both sides' bounds (NaN when a bound is unknown).
        ratio_high: Highest ratio within both sides' bounds.
        ratio_p50: Online / offline median J/request.
        ratio_p90: Online / offline 90th-percentile J/request.
        online_windows: The stored run's other window figures (steady-state, client-token,
            GPU-work): J/request and J/token over requests completed in each window, for reference.
        notes: What else the reader should know.
    """

    run_id: str
    server: str | None
    model: str | None
    online: EnergySide
    offline: EnergySide
    batch_size: int
    max_concurrency: int
    excluded: int
    ratio: float
    ratio_low: float
    ratio_high: float
    ratio_p50: float
    ratio_p90: float
    online_windows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        out = asdict(self)
        out["online"] = self.online.to_dict()
        out["offline"] = self.offline.to_dict()
        return out

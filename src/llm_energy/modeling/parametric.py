"""A fitted per-phase energy model: a few physically motivated terms, least squares on the calibration table.

* prefill energy of a batch:   E_p(B, L) = a0 + a1·B·L + a2·B·L²      (launch/fixed, per token, attention)
* decode energy of one step:   e_s(B, c) = c0 + c1·B + c2·B·c        (weights read, per sequence, KV read)
  with c the mean context during decode (L_in + L_out / 2); decode of a batch = (L_out − 1)·e_s.

Coefficients are fitted with non-negative least squares on relative residuals (each row divided by its
measured value), so small and large points weigh alike. A request run at batch size B costs
E_p(B, L_in)/B + (L_out − 1)·e_s(B, c)/B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from llm_energy.errors import ConfigError


def _prefill_features(b: np.ndarray, lin: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(b), b * lin, b * lin * lin], axis=-1)


def _decode_features(b: np.ndarray, lin: np.ndarray, lout: np.ndarray) -> np.ndarray:
    ctx = lin + lout / 2
    return np.stack([np.ones_like(b), b, b * ctx], axis=-1)


def _fit(features: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy.optimize import nnls  # here: estimate never fits, and scipy.optimize takes ~0.5 s to import

    scale = 1.0 / np.abs(target)
    coef, _ = nnls(features * scale[:, None], target * scale)
    rel = (features @ coef - target) / target
    return coef, float(np.sqrt(np.mean(rel**2)))


@dataclass(frozen=True)
class ParametricModel:
    """Fitted coefficients of the two phase equations (see module docstring)."""

    name: ClassVar[str] = "parametric"
    prefill_coef: tuple[float, float, float]
    decode_coef: tuple[float, float, float]
    prefill_rms_rel_error: float
    decode_rms_rel_error: float

    @classmethod
    def fit(cls, table: pd.DataFrame) -> ParametricModel:
        """Fit on `calibration.calibration_table` rows.

        Raises:
            ConfigError: fewer than 3 points for a phase.
        """
        t = table[(table["output_len"] >= 2) & (table["prefill_j"] > 0) & (table["decode_j"] > 0)]
        if len(t) < 3:
            raise ConfigError(f"the parametric model needs ≥ 3 calibration points, got {len(t)}")
        b, lin, lout = (t[c].to_numpy(float) for c in ("batch_size", "input_len", "output_len"))
        pc, pe = _fit(_prefill_features(b, lin), t["prefill_j"].to_numpy(float))
        dc, de = _fit(_decode_features(b, lin, lout), t["decode_j"].to_numpy(float) / (lout - 1))
        return cls(tuple(pc.tolist()), tuple(dc.tolist()), pe, de)

    def batch_energy_j(self, batch: Any, lin: Any, lout: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return (prefill J, decode J) of a whole batch."""
        b, i, o = (np.asarray(x, float) for x in (batch, lin, lout))
        pre = _prefill_features(b, i) @ np.asarray(self.prefill_coef)
        dec = np.maximum(o - 1, 0) * (_decode_features(b, i, o) @ np.asarray(self.decode_coef))
        return pre, dec

    def request_energy_j(self, batch: Any, lin: Any, lout: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return (prefill J, decode J) per request when run at batch size `batch`."""
        pre, dec = self.batch_energy_j(batch, lin, lout)
        b = np.asarray(batch, float)
        return pre / b, dec / b

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "prefill_coef": list(self.prefill_coef),
            "decode_coef": list(self.decode_coef),
            "prefill_rms_rel_error": self.prefill_rms_rel_error,
            "decode_rms_rel_error": self.decode_rms_rel_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParametricModel:
        """Inverse of `to_dict`."""
        return cls(
            tuple(data["prefill_coef"]),
            tuple(data["decode_coef"]),
            float(data["prefill_rms_rel_error"]),
            float(data["decode_rms_rel_error"]),
        )

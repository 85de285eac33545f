"""The binned workload energy model of the seed study, and its reference rule `p1`.

Requests are grouped into input × output length bins (`bins.py`); every request of a bin is run,
in the estimate, in homogeneous batches of batch size B at the bin's representative lengths, and
costs E_batch(B, L_in, L_out) / B from the calibration grid. Total energy is Σ_bins N_b × that —
the seed's Σ N/B × E_batch. B is the requested batch size, or the largest feasible batch measured
for the shape (the seed study's choice).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from llm_energy.modeling.bins import BinMethod, Bins, log_bins, p1_bins
from llm_energy.modeling.calibration import CalibrationGrid


@dataclass(frozen=True)
class RequestEnergy:
    """Per-request energy estimate (arrays aligned with the trace; dropped requests are NaN)."""

    prefill_j: np.ndarray
    decode_j: np.ndarray
    uncertainty_j: np.ndarray
    kept: np.ndarray
    bins: pd.DataFrame | None = None
    batch_size: np.ndarray | None = None
    """Batch each request was estimated at (its bin's; NaN when dropped)."""

    @property
    def total_j(self) -> np.ndarray:
        """Prefill + decode per request."""
        total: np.ndarray = self.prefill_j + self.decode_j
        return total


def request_energy_at(
    grid: CalibrationGrid, batch: np.ndarray, lin: np.ndarray, lout: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-request prefill J, decode J and uncertainty J of requests run at batch size `batch`."""
    pre = grid.prefill_j_per_token(batch, lin) * lin
    steps = np.maximum(lout - 1, 0)
    dec = grid.decode_j_per_token(batch, lin, np.maximum(lout, 2)) * steps
    pre_u, dec_u = grid.rel_uncertainty(batch, lin, np.maximum(lout, 2))
    return pre, dec, pre * pre_u + dec * dec_u


class BinnedModel:
    """Energy of a trace from a calibration grid, through length bins.

    Args:
        grid: The calibration grid of one configuration.
        feasible: Largest batch that ran per measured (input, output) shape.
        method: `log` (bins at log-spaced edges, representative lengths = the requests' means) or `p1`
            (the seed's power-of-two rule, representative lengths = the bin's upper edges).
        bins: Explicit bins (else chosen from the method and the trace).
    """

    name: ClassVar[str] = "binned"

    def __init__(
        self,
        grid: CalibrationGrid,
        feasible: dict[tuple[int, int], int],
        *,
        method: BinMethod = "log",
        bins: Bins | None = None,
        max_batch: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.grid = grid
        self.feasible = feasible
        self.method = method
        self.bins = bins
        self._max_batch = max_batch

    def max_batch(self, lin: np.ndarray, lout: np.ndarray) -> np.ndarray:
        """Largest feasible batch at each shape.

        The engine's limit when given (KV capacity, max_num_seqs), else that of the nearest measured shape
        no smaller than it.
        """
        if self._max_batch is not None:
            return self._max_batch(np.asarray(lin, float), np.asarray(lout, float))
        if not self.feasible:
            return np.full(np.shape(lin), float(self.grid.batches[-1]))
        shapes = np.array(list(self.feasible))
        caps = np.array(list(self.feasible.values()), float)
        out = np.empty(np.shape(lin), float)
        for k, (li, lo) in enumerate(zip(np.ravel(lin), np.ravel(lout), strict=True)):
            cover = (shapes[:, 0] >= li) & (shapes[:, 1] >= lo)
            pool = caps[cover] if cover.any() else caps[shapes.sum(axis=1) == shapes.sum(axis=1).max()]
            out.flat[k] = pool.min()
        return out

    def estimate(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: int | None = None
    ) -> RequestEnergy:
        """Estimate every request's energy; requests above the last bin edges are dropped (NaN)."""
        lin = np.asarray(input_tokens, float)
        lout = np.asarray(output_tokens, float)
        bins = self.bins or (p1_bins() if self.method == "p1" else log_bins(int(lin.max()), int(lout.max())))
        i, o, kept = bins.assign(lin, lout)
        n_out = len(bins.output_edges)
        key = np.where(kept, i * n_out + o, -1)
        ids, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        valid = ids >= 0
        ids, counts = ids[valid], counts[valid]
        bi, bo = ids // n_out, ids % n_out
        if self.method == "p1":
            rep_in = np.asarray(bins.input_edges, float)[bi]
            rep_out = np.asarray(bins.output_edges, float)[bo]
        else:
            sums_in = np.bincount(inverse, weights=lin)[valid]
            sums_out = np.bincount(inverse, weights=lout)[valid]
            rep_in, rep_out = sums_in / counts, sums_out / counts
        batch = np.full(len(ids), float(batch_size)) if batch_size else self.max_batch(rep_in, rep_out)
        pre, dec, unc = request_energy_at(self.grid, batch, rep_in, rep_out)
        table = pd.DataFrame(
            {
                "input_bin_max": np.asarray(bins.input_edges)[bi],
                "output_bin_max": np.asarray(bins.output_edges)[bo],
                "requests": counts,
                "input_tokens": rep_in,
                "output_tokens": rep_out,
                "batch_size": batch,
                "prefill_j_per_request": pre,
                "decode_j_per_request": dec,
                "energy_j": counts * (pre + dec),
                "uncertainty_j": counts * unc,
            }
        )
        # Map bin values back to requests (dropped ones stay NaN).
        position = np.full(len(key), -1)
        lookup = np.full(int(ids.max()) + 1 if len(ids) else 1, -1)
        lookup[ids] = np.arange(len(ids))
        position[kept] = lookup[key[kept]]

        def per_request(values: np.ndarray) -> np.ndarray:
            out = np.full(len(key), np.nan)
            out[kept] = values[position[kept]]
            return out

        return RequestEnergy(
            per_request(pre), per_request(dec), per_request(unc), kept, table, per_request(batch)
        )

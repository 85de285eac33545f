"""Static (padded) batches: consecutive requests run together, every row at the batch's longest shape.

A static-batching engine (HF `generate` on a padded batch) takes the requests in order in groups of B;
each group is padded to its longest prompt and runs until its longest output, finished rows computing
on. `padded_batches` evaluates a calibration grid per such batch at its padded shape: the binned
model's per-request rule (`request_energy_at`) applied to each batch, and the batch's prefill time and
decode step. Shared by the validation (`validation.models.padded_estimate_j`) and the recommender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.modeling.binned import request_energy_at
from llm_energy.modeling.calibration import CalibrationGrid


def padded_shapes(
    input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive groups of `batch_size` requests: (rows, longest input, longest output) per group.

    Raises:
        ConfigError: `batch_size` < 1.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be ≥ 1, got {batch_size}")
    lin = np.asarray(input_tokens, float)
    lout = np.asarray(output_tokens, float)
    starts = np.arange(0, lin.size, batch_size)
    if starts.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    rows = np.minimum(batch_size, lin.size - starts).astype(float)
    return rows, np.maximum.reduceat(lin, starts), np.maximum.reduceat(lout, starts)


@dataclass(frozen=True)
class PaddedBatches:
    """A grid evaluated per padded batch (arrays per batch, in order).

    Attributes:
        rows: Requests in the batch (the last may be partly filled).
        input_tokens: Its longest input: the padded prompt every row prefills.
        output_tokens: Its longest output: every row decodes until then.
        prefill_j: Prefill GPU joules per row at the padded shape.
        decode_j: Decode GPU joules per row at the padded shape.
        uncertainty_j: Bound of prefill + decode per row (the grid's relative bounds).
        prefill_s: Prefill time of the whole batch (the time to first token of its rows).
        decode_step_s: Time of one decode step of the batch (the TPOT of its rows).
    """

    rows: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prefill_j: np.ndarray
    decode_j: np.ndarray
    uncertainty_j: np.ndarray
    prefill_s: np.ndarray
    decode_step_s: np.ndarray

    @property
    def batch_s(self) -> np.ndarray:
        """Time each batch runs: prefill + (longest output − 1) decode steps (all rows return at its end)."""
        total: np.ndarray = self.prefill_s + np.maximum(self.output_tokens - 1, 0) * self.decode_step_s
        return total

    @property
    def energy_j(self) -> float:
        """GPU joules of all batches."""
        return float((self.rows * (self.prefill_j + self.decode_j)).sum())

    @property
    def energy_uncertainty_j(self) -> float:
        """Bound of `energy_j` (per-row bounds summed: worst case)."""
        return float((self.rows * self.uncertainty_j).sum())

    def per_request(self, values: np.ndarray) -> np.ndarray:
        """Spread per-batch values to the requests, in order (each request gets its batch's value)."""
        out: np.ndarray = np.repeat(values, self.rows.astype(int))
        return out


def padded_batches(
    grid: CalibrationGrid, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: int
) -> PaddedBatches:
    """Evaluate `grid` on the requests run in order as static batches of `batch_size`, each padded.

    Raises:
        ConfigError: `batch_size` < 1.
    """
    b, lin, lout = padded_shapes(input_tokens, output_tokens, batch_size)
    pre, dec, unc = request_energy_at(grid, b, lin, lout)  # per request of each padded batch
    prefill_s = np.asarray(grid.prefill_batch_s(b, lin), float)
    step_s = np.asarray(grid.decode_step_s(b, lin, np.maximum(lout, 2)), float)
    return PaddedBatches(b, lin, lout, pre, dec, unc, prefill_s, step_s)


__all__ = ["PaddedBatches", "padded_batches", "padded_shapes"]

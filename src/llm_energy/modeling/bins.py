"""Bins over input and output token lengths: how a trace's requests become groups with one energy.

Two rules:

* `p1` — the seed study's reference: each length goes to the smallest power of two ≥ it (input
  16…8192, output 8…512); requests above the caps are dropped and counted.
* `log` (default) — log-spaced edges (configurable); a bin's representative lengths are the mean
  lengths of the trace's requests in it, so the calibration data is read where the requests are
  rather than at a bin edge (docs/methodology.md, "From requests to bins").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from llm_energy.errors import ConfigError

BinMethod = Literal["p1", "log"]

P1_INPUT_EDGES = tuple(2**k for k in range(4, 14))  # 16 … 8192
P1_OUTPUT_EDGES = tuple(2**k for k in range(3, 10))  # 8 … 512
P1_PRINTED_INPUT_EDGES = (32, 128, 256, 512, 1024, 2048, 4096, 8192)
"""The list printed in the seed paper, offered as a variant (`--input-edges`)."""


@dataclass(frozen=True)
class Bins:
    """Upper edges of input and output bins; a length L falls in the first bin whose edge ≥ L."""

    input_edges: tuple[int, ...]
    output_edges: tuple[int, ...]
    method: BinMethod = "log"

    def __post_init__(self) -> None:
        for name, edges in (("input", self.input_edges), ("output", self.output_edges)):
            if not edges or any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
                raise ConfigError(f"{name} bin edges must be positive and strictly increasing, got {edges}")

    def assign(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (input bin index, output bin index, kept mask); beyond the last edges: not kept."""
        i = np.searchsorted(np.asarray(self.input_edges), input_tokens, side="left")
        o = np.searchsorted(np.asarray(self.output_edges), output_tokens, side="left")
        kept = (i < len(self.input_edges)) & (o < len(self.output_edges))
        return i, o, kept

    def lower_edge(self, axis: Literal["input", "output"], index: int) -> int:
        """Return the smallest length in bin `index` of `axis`."""
        edges = self.input_edges if axis == "input" else self.output_edges
        return 1 if index == 0 else edges[index - 1] + 1


def p1_bins(
    input_edges: tuple[int, ...] = P1_INPUT_EDGES, output_edges: tuple[int, ...] = P1_OUTPUT_EDGES
) -> Bins:
    """The seed study's ceiling power-of-two bins."""
    return Bins(tuple(input_edges), tuple(output_edges), "p1")


def log_bins(
    max_input: int, max_output: int, *, per_octave: int = 2, min_input: int = 16, min_output: int = 8
) -> Bins:
    """Log-spaced bins with `per_octave` bins per doubling, up to (and covering) the given maxima."""
    if per_octave < 1:
        raise ConfigError(f"per_octave must be ≥ 1, got {per_octave}")

    def edges(lo: int, hi: int) -> tuple[int, ...]:
        n = max(1, int(np.ceil(np.log2(max(hi, lo) / lo) * per_octave)))
        raw = np.unique(np.ceil(lo * 2 ** (np.arange(n + 1) / per_octave)).astype(int))
        return tuple(int(e) for e in raw)

    return Bins(edges(min_input, max_input), edges(min_output, max_output), "log")

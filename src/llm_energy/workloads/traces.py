"""Real request traces (Azure, Mooncake, length lists, any CSV/JSONL/Parquet) as columnar `Trace`s.

An energy estimate is only as good as the workload it is applied to, so workloads come from real
production traces where possible. This module reads them into one shape, a `Trace` of int64 token
columns and float64 arrival seconds, whatever the file's layout, and promises:

- no row is ever dropped and no NaN is ever produced: every bad value (missing, non-numeric, < 1,
  unparseable or out-of-order timestamp) is one `ConfigError` naming the 1-based data row (header
  excluded) and the column;
- timestamps keep their full precision (the Azure traces have 7 fractional digits, i.e. 100 ns);
- files of any size can be streamed (`iter_trace_chunks`) in bounded memory, with arrival times
  relative to the file's first request and row numbers counted over the whole file.

pandas and pyarrow are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.records import Request
from llm_energy.workloads._readers import (
    _FORMATS,
    FloatArray,
    Format,
    IntArray,
    _Clock,
    _columns,
    _frames,
    _Layout,
    _lengths,
    _pick_layout,
    _sniff_format,
)

__all__ = [
    "BUNDLED_TRACES",
    "TokenStats",
    "Trace",
    "TraceSummary",
    "iter_trace_chunks",
    "load_trace",
]

_log = logging.getLogger(__name__)

_TRACES_DIR = files("llm_energy").joinpath("data", "traces")
BUNDLED_TRACES: dict[str, Traversable] = {
    "azure-conv": _TRACES_DIR.joinpath("azure_conv_2023.csv"),
    "azure-code": _TRACES_DIR.joinpath("azure_code_2023.csv"),
}
"""Traces shipped with the package (Azure LLM inference 2023, CC-BY 4.0; see data/traces/NOTICE.md)."""


@dataclass(frozen=True)
class TokenStats:
    """Distribution of a token-count column (percentiles by numpy's default linear interpolation)."""

    min: int
    p50: float
    mean: float
    p90: float
    p99: float
    max: int

    @classmethod
    def of(cls, tokens: IntArray) -> TokenStats:
        """Return the statistics of a non-empty token array."""
        p50, p90, p99 = np.percentile(tokens, [50, 90, 99])
        return cls(
            int(tokens.min()), float(p50), float(tokens.mean()), float(p90), float(p99), int(tokens.max())
        )


@dataclass(frozen=True)
class TraceSummary:
    """Summary of a trace.

    Attributes:
        count: Number of requests.
        input_tokens: Distribution of prompt lengths.
        output_tokens: Distribution of output lengths.
        duration_s: Last arrival minus first arrival in seconds; None without arrival times.
        rate_per_s: Mean arrival rate, (count - 1) / duration_s, i.e. 1 / mean gap, in requests per
            second; None without arrival times or when all requests arrive at once.
    """

    count: int
    input_tokens: TokenStats
    output_tokens: TokenStats
    duration_s: float | None
    rate_per_s: float | None


@dataclass(frozen=True, eq=False)
class Trace:
    """A request trace in columns: one entry per request, in arrival order.

    Attributes:
        name: Short name (bundled name or file stem).
        input_tokens: Prompt lengths in tokens, int64, each ≥ 1.
        output_tokens: Output lengths in tokens, int64, each ≥ 1.
        arrival_s: Arrival times in seconds from the first request (float64, non-decreasing),
            or None when the trace has no times (length lists).
        source: The file path or bundled name the trace was read from.
    """

    name: str
    input_tokens: IntArray
    output_tokens: IntArray
    arrival_s: FloatArray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Coerce the columns to their dtypes and check shapes, token counts and time order."""
        inp = np.asarray(self.input_tokens, dtype=np.int64)
        out = np.asarray(self.output_tokens, dtype=np.int64)
        if inp.ndim != 1 or inp.shape != out.shape:
            raise ConfigError(f"trace {self.name}: token columns must be 1-D of equal length")
        if inp.size and min(int(inp.min()), int(out.min())) < 1:
            raise ConfigError(f"trace {self.name}: token counts must be ≥ 1")
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)
        if self.arrival_s is not None:
            arr = np.asarray(self.arrival_s, dtype=np.float64)
            if arr.shape != inp.shape:
                raise ConfigError(f"trace {self.name}: arrival_s must have one entry per request")
            if not np.isfinite(arr).all() or bool((np.diff(arr) < 0).any()):
                raise ConfigError(f"trace {self.name}: arrival_s must be finite and non-decreasing")
            object.__setattr__(self, "arrival_s", arr)

    def __len__(self) -> int:
        return int(self.input_tokens.size)

    def requests(self) -> list[Request]:
        """Return the trace as `Request` records (one Python object each: for small traces only)."""
        inp, out = self.input_tokens.tolist(), self.output_tokens.tolist()
        if self.arrival_s is None:
            return [Request(i, o) for i, o in zip(inp, out, strict=True)]
        return [Request(i, o, t) for i, o, t in zip(inp, out, self.arrival_s.tolist(), strict=True)]

    def _take(self, index: slice | IntArray, rebase: bool) -> Trace:
        arrival_s = None if self.arrival_s is None else self.arrival_s[index]
        if rebase and arrival_s is not None and arrival_s.size:
            arrival_s = arrival_s - arrival_s[0]
        return Trace(self.name, self.input_tokens[index], self.output_tokens[index], arrival_s, self.source)

    def head(self, n: int) -> Trace:
        """Return the first `n` requests (all of them if the trace is shorter).

        Raises:
            ConfigError: If n < 0.
        """
        if n < 0:
            raise ConfigError(f"head: n must be ≥ 0, got {n}")
        return self._take(slice(0, n), rebase=False)

    def sample(self, n: int, rng: np.random.Generator) -> Trace:
        """Return `n` requests drawn without replacement, kept in trace order.

        Arrival times are kept and re-based so the first sampled request arrives at 0 (the sample
        spans the same time as the trace, so its rate is lower).

        Raises:
            ConfigError: If n < 0 or n > len(self).
        """
        if not 0 <= n <= len(self):
            raise ConfigError(f"sample: n must be in [0, {len(self)}] (the trace length), got {n}")
        index = np.sort(rng.choice(len(self), size=n, replace=False))
        return self._take(index, rebase=True)

    def window(self, start_s: float, duration_s: float) -> Trace:
        """Return the requests arriving in [start_s, start_s + duration_s), the first at 0 s.

        Raises:
            ConfigError: If the trace has no arrival times, start_s < 0 or duration_s ≤ 0.
        """
        arrival_s = self._arrivals("window")
        if start_s < 0 or not duration_s > 0:
            raise ConfigError(f"window: need start_s ≥ 0 and duration_s > 0, got {start_s}, {duration_s}")
        lo, hi = np.searchsorted(arrival_s, [start_s, start_s + duration_s], side="left")
        return self._take(slice(int(lo), int(hi)), rebase=True)

    def scale_time(self, factor: float) -> Trace:
        """Return the trace with arrival times divided by `factor` (2 = twice the rate, half the span).

        Raises:
            ConfigError: If the trace has no arrival times or factor is not a finite number > 0.
        """
        arrival_s = self._arrivals("scale_time")
        if not (np.isfinite(factor) and factor > 0):
            raise ConfigError(f"scale_time: factor must be a finite number > 0, got {factor}")
        return Trace(self.name, self.input_tokens, self.output_tokens, arrival_s / factor, self.source)

    def summary(self) -> TraceSummary:
        """Return count, token-length distributions, and duration and mean rate when times exist.

        Raises:
            ConfigError: If the trace is empty.
        """
        if not len(self):
            raise ConfigError(f"trace {self.name} is empty: nothing to summarise")
        duration_s = rate_per_s = None
        if self.arrival_s is not None:
            duration_s = float(self.arrival_s[-1] - self.arrival_s[0])
            rate_per_s = (len(self) - 1) / duration_s if duration_s > 0 else None
        return TraceSummary(
            len(self),
            TokenStats.of(self.input_tokens),
            TokenStats.of(self.output_tokens),
            duration_s,
            rate_per_s,
        )

    def _arrivals(self, what: str) -> FloatArray:
        if self.arrival_s is None:
            raise ConfigError(f"{what}: trace {self.name} has no arrival times")
        return self.arrival_s


def load_trace(
    spec: str | Path,
    *,
    input_col: str | None = None,
    output_col: str | None = None,
    time_col: str | None = None,
    fmt: Format | None = None,
) -> Trace:
    """Read a whole trace file (or a bundled trace) into one `Trace`.

    The layout is recognised from the columns: Azure (`TIMESTAMP, ContextTokens, GeneratedTokens`),
    Mooncake (`timestamp_ms` or `timestamp` in ms, `input_length, output_length`) and length lists
    (`num_prefill_tokens, num_decode_tokens`, no times). Explicit column names override the detected
    ones; a time column named explicitly may hold numeric seconds or datetimes.

    Args:
        spec: A bundled name (see `BUNDLED_TRACES`) or a path to a CSV, JSONL or Parquet file.
        input_col: Column of prompt lengths.
        output_col: Column of output lengths.
        time_col: Column of arrival times (numeric seconds or datetimes).
        fmt: File format; detected from the content when None.

    Returns:
        The trace, arrival times relative to the first request.

    Raises:
        ConfigError: If the file cannot be read or holds no rows, a required column is missing, or a
            value is invalid (the message names the 1-based data row and the column).
    """
    chunks = list(
        iter_trace_chunks(spec, input_col=input_col, output_col=output_col, time_col=time_col, fmt=fmt)
    )
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    times = [c.arrival_s for c in chunks if c.arrival_s is not None]
    return Trace(
        first.name,
        np.concatenate([c.input_tokens for c in chunks]),
        np.concatenate([c.output_tokens for c in chunks]),
        np.concatenate(times) if times else None,
        first.source,
    )


def iter_trace_chunks(
    spec: str | Path,
    *,
    chunk_rows: int = 1_000_000,
    input_col: str | None = None,
    output_col: str | None = None,
    time_col: str | None = None,
    fmt: Format | None = None,
) -> Iterator[Trace]:
    """Stream a trace in chunks of at most `chunk_rows` requests, in bounded memory.

    Arrival times are relative to the first request of the whole file, and row numbers in error
    messages count over the whole file. The file, its format and its columns are checked at once;
    values are checked chunk by chunk as they are read. Arguments are as for `load_trace`.

    Yields:
        Consecutive `Trace` chunks; their concatenation equals `load_trace(spec, ...)`.

    Raises:
        ConfigError: As `load_trace` (value errors when the offending chunk is read).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be an integer ≥ 1, got {chunk_rows!r}")
    name, source, resource = _resolve(spec)
    with as_file(resource) as path:
        fmt = fmt or _sniff_format(path, source)
        if fmt not in _FORMATS:
            raise ConfigError(f"unknown trace format {fmt!r}; expected one of {', '.join(_FORMATS)}")
        layout = _pick_layout(_columns(path, fmt, source), input_col, output_col, time_col, source)
    _log.debug("trace %s: %s layout, format %s", source, layout.name, fmt)
    return _chunks(name, source, resource, fmt, layout, chunk_rows)


def _chunks(
    name: str, source: str, resource: Traversable | Path, fmt: Format, layout: _Layout, chunk_rows: int
) -> Iterator[Trace]:
    clock = _Clock(layout.time_unit)
    rows = 0
    with as_file(resource) as path:
        for frame in _frames(path, fmt, layout, chunk_rows, source):
            if not len(frame):
                continue
            inp = _lengths(frame[layout.input_col], layout.input_col, "input", rows, source)
            out = _lengths(frame[layout.output_col], layout.output_col, "output", rows, source)
            arrival_s = None
            if layout.time_col is not None:
                arrival_s = clock.arrivals(frame[layout.time_col], layout.time_col, rows, source)
            rows += len(frame)
            yield Trace(name, inp, out, arrival_s, source)
    if rows == 0:
        raise ConfigError(f"trace {source} has a header but no data rows")


def _resolve(spec: str | Path) -> tuple[str, str, Traversable | Path]:
    """Return (name, source, file) for a bundled name or a path."""
    if isinstance(spec, str) and spec in BUNDLED_TRACES:
        return spec, spec, BUNDLED_TRACES[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ConfigError(f"trace file {what}: {path} (bundled traces: {', '.join(sorted(BUNDLED_TRACES))})")
    return path.name.split(".")[0], str(path), path

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

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from llm_energy.errors import ConfigError
from llm_energy.records import Request

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUNDLED_TRACES",
    "TokenStats",
    "Trace",
    "TraceSummary",
    "iter_trace_chunks",
    "load_trace",
]

_log = logging.getLogger(__name__)

Format = Literal["csv", "jsonl", "parquet"]
TimeUnit = Literal["datetime", "ms", "s", "auto"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_NS_PER_S = 1_000_000_000
_MS_PER_S = 1000.0
_FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")

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


@dataclass(frozen=True)
class _Layout:
    """Which columns hold what, and how the time column is encoded."""

    name: str
    input_col: str
    output_col: str
    time_col: str | None = None
    time_unit: TimeUnit = "auto"

    def columns(self) -> list[str]:
        return [c for c in (self.time_col, self.input_col, self.output_col) if c]


_LAYOUTS = (
    _Layout("Azure", "ContextTokens", "GeneratedTokens", "TIMESTAMP", "datetime"),
    _Layout("Mooncake CSV", "input_length", "output_length", "timestamp_ms", "ms"),
    _Layout("Mooncake JSONL", "input_length", "output_length", "timestamp", "ms"),
    _Layout("length list", "num_prefill_tokens", "num_decode_tokens"),
)


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


def _head_bytes(path: Path, source: str, n: int = 4096) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(n)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                head = g.read(n)
    except (OSError, EOFError) as e:
        raise ConfigError(f"cannot read trace file {source}: {e}") from e
    return head


def _sniff_format(path: Path, source: str) -> Format:
    """Tell Parquet (magic bytes), JSON Lines (first character `{`) and CSV apart by content."""
    head = _head_bytes(path, source)
    if head[:4] == b"PAR1":
        return "parquet"
    if not head.strip():
        raise ConfigError(f"trace file {source} is empty")
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "csv"


def _columns(path: Path, fmt: Format, source: str) -> list[str]:
    """Return the column names of the file, or raise ConfigError if it cannot be read."""
    import pandas as pd

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        if fmt == "jsonl":
            with _open(path) as f:
                line = next((ln for ln in f if ln.strip()), "")
            if not line:
                raise ConfigError(f"trace file {source} is empty")
            first = json.loads(line)
            if not isinstance(first, dict):
                raise ConfigError(f"trace {source}: row 1 is not a JSON object")
            return list(first)
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except ConfigError:
        raise
    except pd.errors.EmptyDataError as e:
        raise ConfigError(f"trace file {source} is empty") from e
    except Exception as e:  # OSError, bad JSON or UTF-8, and pyarrow's own errors for a corrupt Parquet
        raise ConfigError(f"cannot read trace file {source} as {fmt}: {e}") from e


def _open(path: Path) -> Any:
    """Open a text file, decompressing gzip transparently."""
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gz else path.open(encoding="utf-8")


def _pick_layout(
    found: list[str], input_col: str | None, output_col: str | None, time_col: str | None, source: str
) -> _Layout:
    """Return the columns to read: the detected layout, overridden by explicit names."""
    present = set(found)
    detected = next((lay for lay in _LAYOUTS if set(lay.columns()) <= present), None)
    for flag, col in {"input": input_col, "output": output_col, "time": time_col}.items():
        if col is not None and col not in present:
            raise ConfigError(
                f"trace {source}: column {col!r} (--{flag}-col) not found; columns found: {found}"
            )
    if detected is None and (input_col is None or output_col is None):
        expected = "; ".join(f"{lay.name} ({', '.join(lay.columns())})" for lay in _LAYOUTS)
        raise ConfigError(
            f"trace {source}: no known layout matches its columns {found}. Expected one of: {expected}. "
            "Otherwise name the columns with --input-col and --output-col (and --time-col)."
        )
    base = detected or _Layout("custom", "", "")
    unit: TimeUnit = "auto"
    if time_col is None or time_col == base.time_col:
        time_col, unit = base.time_col, base.time_unit
    return _Layout(base.name, input_col or base.input_col, output_col or base.output_col, time_col, unit)


def _frames(path: Path, fmt: Format, layout: _Layout, chunk_rows: int, source: str) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most `chunk_rows` rows holding the layout's columns, in file order."""
    import pandas as pd

    cols = list(dict.fromkeys(layout.columns()))
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=cols):
                yield batch.to_pandas()
        elif fmt == "jsonl":
            opts: dict[str, Any] = {"dtype": False}
            if int(pd.__version__.split(".")[0]) < 3:  # pandas 2 turns a `timestamp` key into datetimes
                opts |= {"convert_dates": False, "keep_default_dates": False}
            with pd.read_json(path, lines=True, chunksize=chunk_rows, **opts) as reader:
                for frame in reader:
                    for col in cols:  # a key absent from every line of a chunk: all missing
                        if col not in frame:
                            frame[col] = None
                    yield frame[cols]
        else:
            dtype = {layout.time_col: str} if layout.time_unit == "datetime" and layout.time_col else None
            # low_memory=False: infer each column's type over the whole chunk (no DtypeWarning)
            with pd.read_csv(
                path, usecols=cols, dtype=dtype, chunksize=chunk_rows, low_memory=False
            ) as reader:
                yield from reader
    except ConfigError:
        raise
    except Exception as e:  # OSError, pandas ParserError (a ValueError), pyarrow's own errors
        if fmt == "jsonl" and not isinstance(e, OSError):
            raise ConfigError(_json_error(path, source, e)) from e
        raise ConfigError(f"cannot read trace file {source} as {fmt}: {e}") from e


def _json_error(path: Path, source: str, error: Exception) -> str:
    """Find the first line of a JSON Lines file that is not a JSON object (only on the error path)."""
    with _open(path) as f:
        for row, line in enumerate((ln for ln in f if ln.strip()), start=1):
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                return f"trace {source}: row {row} is not a JSON object: {line.strip()[:80]!r}"
    return f"cannot parse trace file {source} as JSON Lines: {error}"


def _row_error(source: str, first_row: int, index: int, column: str, problem: str) -> ConfigError:
    return ConfigError(f"trace {source}: row {first_row + index + 1}, column {column!r}: {problem}")


def _first(mask: npt.NDArray[np.bool_]) -> int:
    """Return the index of the first True in `mask`, or -1 if there is none."""
    return int(mask.argmax()) if mask.any() else -1


def _numbers(series: pd.Series, column: str, what: str, first_row: int, source: str) -> FloatArray | IntArray:
    """Return a column as int64 or float64 values, or raise naming the first missing or non-numeric row."""
    import pandas as pd

    kind = series.dtype.kind
    if kind in "iu" and not series.hasnans:
        return np.asarray(series.to_numpy(dtype=np.int64), dtype=np.int64)
    if kind in "iuf":
        values = np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    elif kind == "b":
        raise _row_error(source, first_row, 0, column, f"{what} is not a number: {series.iloc[0]!r}")
    else:
        values = np.asarray(
            pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan), np.float64
        )
        if (i := _first(np.isnan(values) & series.notna().to_numpy())) >= 0:
            raise _row_error(source, first_row, i, column, f"{what} is not a number: {series.iloc[i]!r}")
    if (i := _first(np.isnan(values))) >= 0:
        raise _row_error(source, first_row, i, column, f"{what} is missing")
    if (i := _first(~np.isfinite(values))) >= 0:
        raise _row_error(source, first_row, i, column, f"{what} is not finite: {values[i]}")
    return values


def _lengths(series: pd.Series, column: str, what: str, first_row: int, source: str) -> IntArray:
    """Return a token-count column as int64 ≥ 1, or raise ConfigError naming the first bad row."""
    values = _numbers(series, column, f"{what} length", first_row, source)
    if values.dtype.kind == "f" and (i := _first(values != np.floor(values))) >= 0:
        raise _row_error(source, first_row, i, column, f"{what} length is not a whole number: {values[i]}")
    if (i := _first(values < 1)) >= 0:
        raise _row_error(source, first_row, i, column, f"{what} length must be ≥ 1, got {values[i]:g}")
    return values.astype(np.int64, copy=False)


class _Clock:
    """Turns time columns into seconds from the file's first request, across chunks.

    Datetimes are kept as int64 nanoseconds until re-based, so 100 ns digits survive; numeric times
    are float64 seconds (milliseconds divided by 1000 for Mooncake).
    """

    def __init__(self, unit: TimeUnit) -> None:
        self.unit = unit
        self.first: Any = None  # the file's first time: int ns (datetimes) or float seconds
        self.last: Any = None  # the previous chunk's last time, same unit

    def arrivals(self, series: pd.Series, column: str, first_row: int, source: str) -> FloatArray:
        times = self._parse(series, column, first_row, source)
        if self.first is None:
            self.first = self.last = times[0].item()
        if (i := _first(np.diff(times, prepend=self.last) < 0)) >= 0:
            raise _row_error(
                source, first_row, i, column, "timestamps are not sorted (earlier than the row before)"
            )
        self.last = times[-1].item()
        since_first = times - self.first  # exact in int64 ns for datetimes, before going to float
        return np.asarray(since_first / _NS_PER_S if self.unit == "datetime" else since_first, np.float64)

    def _parse(self, series: pd.Series, column: str, first_row: int, source: str) -> npt.NDArray[Any]:
        import pandas as pd

        if self.unit == "auto":  # decided once, by the first value, so every chunk reads alike
            first = series.dropna().iloc[:1]
            text = series.dtype.kind in "OSUT" and bool(pd.to_numeric(first, errors="coerce").isna().any())
            self.unit = "datetime" if series.dtype.kind == "M" or text else "s"
        if self.unit != "datetime":
            seconds = _numbers(series, column, "timestamp", first_row, source).astype(np.float64)
            return seconds / _MS_PER_S if self.unit == "ms" else seconds
        if series.dtype.kind != "M":
            try:
                parsed = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=True)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"trace {source}: cannot parse timestamps in column {column!r}: {e}") from e
            if (i := _first((parsed.isna() & series.notna()).to_numpy())) >= 0:
                raise _row_error(source, first_row, i, column, f"cannot parse timestamp {series.iloc[i]!r}")
            series = parsed
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        if (i := _first(series.isna().to_numpy())) >= 0:
            raise _row_error(source, first_row, i, column, "timestamp is missing")
        return np.asarray(series.to_numpy(dtype="datetime64[ns]")).view(np.int64)

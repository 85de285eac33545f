"""Private readers behind `llm_energy.workloads.traces`: format sniffing, column layouts, validation.

These helpers turn a trace file (CSV, JSON Lines or Parquet, gzipped or not) into validated numpy
columns: they detect the format and the column layout, stream the file in DataFrame chunks, and
check every value, raising one `ConfigError` that names the 1-based data row and the column. They
live apart from `traces` only to keep that module (the public `Trace` API) short; nothing here is
public API, and `traces` re-imports what it needs.

pandas and pyarrow are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["csv", "jsonl", "parquet"]
TimeUnit = Literal["datetime", "ms", "s", "auto"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_NS_PER_S = 1_000_000_000
_MS_PER_S = 1000.0
_FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")


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


MAX_REQUEST_TOKENS = 2**31 - 1
"""Most tokens one request may have in a trace: beyond any model's context and any tensor's index."""


def _row_error(source: str, first_row: int, index: int, column: str, problem: str) -> ConfigError:
    return ConfigError(f"trace {source}: row {first_row + index + 1}, column {column!r}: {problem}")


def _first(mask: npt.NDArray[np.bool_]) -> int:
    """Return the index of the first True in `mask`, or -1 if there is none."""
    return int(mask.argmax()) if mask.any() else -1


def _numbers(series: pd.Series, column: str, what: str, first_row: int, source: str) -> FloatArray | IntArray:
    """Return a column as int64 or float64 values, or raise naming the first missing or non-numeric row."""
    import pandas as pd

    kind = series.dtype.kind
    if kind == "i" and not series.hasnans:  # uint64 goes through float64: past 2**63 it would wrap
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
    """Return a token-count column as int64 in [1, MAX_REQUEST_TOKENS], or raise naming the first bad row."""
    values = _numbers(series, column, f"{what} length", first_row, source)
    if values.dtype.kind == "f" and (i := _first(values != np.floor(values))) >= 0:
        raise _row_error(source, first_row, i, column, f"{what} length is not a whole number: {values[i]}")
    if (i := _first(values < 1)) >= 0:
        raise _row_error(source, first_row, i, column, f"{what} length must be ≥ 1, got {values[i]:g}")
    if (i := _first(values > MAX_REQUEST_TOKENS)) >= 0:
        raise _row_error(
            source,
            first_row,
            i,
            column,
            f"{what} length {values[i]:.4g} is more than {MAX_REQUEST_TOKENS:,} tokens (2**31 - 1)",
        )
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
            # Numbers in a datetime column (JSONL) are parsed as text, so they are refused as timestamps
            # rather than read as epochs (pandas deprecates parsing numbers with a format).
            text_series = series.where(series.isna(), series.astype(str))
            try:
                parsed = pd.to_datetime(text_series, format="ISO8601", errors="coerce", utc=True)
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

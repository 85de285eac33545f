"""Export the table of runs (`frames.frame_of_runs`) as CSV or Parquet.

`export_runs` writes the file under a temporary name in the target's directory, flushes it to disk
and renames it over the target (`os.replace`, atomic on POSIX and Windows), so an interrupted export
never leaves a half-written file and never clobbers an existing one with partial content.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, get_args

from llm_energy.atomic import write_atomically
from llm_energy.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pandas as pd

    from llm_energy.store.db import Store

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "parquet"]
"""File formats `export_runs` writes."""

EXPORT_SUFFIXES: Final[dict[str, ExportFormat]] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
"""File suffixes (lower case) from which `export_runs` infers the format."""


def export_runs(
    store: Store,
    path: str | Path,
    *,
    fmt: ExportFormat | None = None,
    status: str | None = None,
) -> int:
    """Write the store's runs, one row per run, to a CSV or Parquet file.

    Args:
        store: The results store to read.
        path: Target file; its parent directories are created. An existing file is replaced
            atomically, only once the new content is complete.
        fmt: `csv` or `parquet`; inferred from the suffix of `path` (see `EXPORT_SUFFIXES`) when
            None.
        status: Export only runs of this status (`ok`, `oom` or `error`).

    Returns:
        The number of rows (runs) written.

    Raises:
        ConfigError: The format is unknown or cannot be inferred from the suffix, or `status` is
            unknown.
        StoreError: The store cannot be read or the file cannot be written.
    """
    target = Path(path).expanduser()
    chosen = _format_of(target, fmt)
    frame = store.runs_frame(status=status)
    if chosen == "parquet":
        frame = _parquet_ready(frame)
    _write_atomically(frame, target, chosen)
    logger.info("exported %d runs to %s (%s)", len(frame), target, chosen)
    return len(frame)


def _format_of(target: Path, fmt: str | None) -> ExportFormat:
    formats: tuple[ExportFormat, ...] = get_args(ExportFormat)
    if fmt is not None:
        for known in formats:
            if fmt == known:
                return known
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(formats)}")
    inferred = EXPORT_SUFFIXES.get(target.suffix.lower())
    if inferred is None:
        raise ConfigError(
            f"cannot infer the export format of {target}: suffix {target.suffix!r} is not one of "
            f"{', '.join(EXPORT_SUFFIXES)} (or pass fmt= explicitly)"
        )
    return inferred


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with mixed-type object columns turned into strings.

    Config keys may hold an int in one run and a string in another; pyarrow needs one type per
    column, and CSV would have turned both into text anyway.
    """

    def is_missing(value: object) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    mixed = [
        name
        for name in frame.columns
        if frame[name].dtype == object and len({type(v) for v in frame[name] if not is_missing(v)}) > 1
    ]
    if not mixed:
        return frame
    frame = frame.copy()
    for name in mixed:
        frame[name] = [None if is_missing(v) else str(v) for v in frame[name]]
    return frame


def _write_atomically(frame: pd.DataFrame, target: Path, fmt: ExportFormat) -> None:
    """Encode `frame` in memory (a runs table is small), then write it atomically (`llm_energy.atomic`)."""
    if fmt == "csv":
        text = io.StringIO()
        frame.to_csv(text, index=False)
        data = text.getvalue().encode("utf-8")
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow", index=False)
        data = buffer.getvalue()
    write_atomically(target, data, error=StoreError, action="export runs to")

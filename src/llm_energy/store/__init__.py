"""The results store: one SQLite file holding every run, and flat exports of it.

`Store` writes and reads `RunResult`s (see `db.py` for its guarantees); `export_runs` writes the
one-row-per-run table as CSV or Parquet without ever leaving a half-written file.
"""

from __future__ import annotations

from llm_energy.store.db import APPLICATION_ID, MEMORY, SCHEMA_VERSION, Store, default_db_path
from llm_energy.store.export import EXPORT_SUFFIXES, ExportFormat, export_runs
from llm_energy.store.frames import FRAME_PHASES, frame_of_runs

__all__ = [
    "APPLICATION_ID",
    "EXPORT_SUFFIXES",
    "FRAME_PHASES",
    "MEMORY",
    "SCHEMA_VERSION",
    "ExportFormat",
    "Store",
    "default_db_path",
    "export_runs",
    "frame_of_runs",
]

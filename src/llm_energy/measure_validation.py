"""Moved to `llm_energy.validation.engine`: re-exported until every caller imports it there."""

from __future__ import annotations

from llm_energy.validation.engine import measure_run

__all__ = ["measure_run"]

"""Points to measure and the runner that measures one point (sweeps over many points build on it)."""

from __future__ import annotations

from llm_energy.sweep.runner import RunOptions, run_point
from llm_energy.sweep.spec import Point

__all__ = ["Point", "RunOptions", "run_point"]

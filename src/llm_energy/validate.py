"""Moved to `llm_energy.validation.offline`; re-exported until every caller imports it there."""

from __future__ import annotations

from llm_energy.validation.offline import (
    Batching,
    ModelError,
    ValidationRun,
    compare,
    physical_padded_j,
    run_validation,
    sample_requests,
    slo_attainment,
    static_batches,
)

__all__ = [
    "Batching",
    "ModelError",
    "ValidationRun",
    "compare",
    "physical_padded_j",
    "run_validation",
    "sample_requests",
    "slo_attainment",
    "static_batches",
]

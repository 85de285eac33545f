"""Per-request latencies of the vLLM engine from `RequestOutput.metrics`, on stand-in outputs.

Runs without vLLM: only the arithmetic and the refusals; tests/engines/test_vllm.py runs the real one.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from llm_energy.engines.vllm import _request_latencies


def _output(tokens: int, first_ts: float | None, last_ts: float | None) -> SimpleNamespace:
    metrics = None if first_ts is None else SimpleNamespace(first_token_ts=first_ts, last_token_ts=last_ts)
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(range(tokens)))], metrics=metrics)


def test_latencies_are_measured_from_the_submission_on_the_monotonic_clock() -> None:
    outputs = [_output(5, 101.0, 103.0), _output(1, 101.5, 101.5), _output(3, 102.0, 102.5)]
    latencies = _request_latencies(outputs, submitted_s=100.0, returned_s=104.0)
    assert latencies == [
        pytest.approx((1.0, 0.5, 3.0)),
        pytest.approx((1.5, 0.0, 1.5)),  # one token: no decode step, TPOT 0 as vLLM's own
        pytest.approx((2.0, 0.25, 2.5)),
    ]


def test_missing_metrics_give_none_and_say_why(caplog: pytest.LogCaptureFixture) -> None:
    outputs = [_output(4, 101.0, 102.0), _output(4, None, None)]
    with caplog.at_level(logging.WARNING, logger="llm_energy.engines.vllm"):
        assert _request_latencies(outputs, submitted_s=100.0, returned_s=104.0) is None
    assert len(caplog.records) == 1
    assert "disable_log_stats=False" in caplog.text


@pytest.mark.parametrize(
    ("first_ts", "last_ts"),
    [(99.0, 102.0), (101.0, 105.0), (102.0, 101.0), (0.0, 0.0)],
    ids=["before-submission", "after-return", "last-before-first", "never-stamped"],
)
def test_timestamps_outside_the_call_are_refused(
    first_ts: float, last_ts: float, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_energy.engines.vllm"):
        assert (
            _request_latencies([_output(4, first_ts, last_ts)], submitted_s=100.0, returned_s=104.0) is None
        )
    assert "another clock" in caplog.text

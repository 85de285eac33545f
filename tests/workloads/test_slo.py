"""Latency SLO specs: bounds in seconds, and every malformed part named."""

from __future__ import annotations

import pytest

from llm_energy.errors import ConfigError
from llm_energy.workloads.slo import parse_slo


def test_parse_slo():
    assert parse_slo("ttft=2s,tpot=100ms,e2e=30s") == pytest.approx({"ttft": 2.0, "tpot": 0.1, "e2e": 30.0})
    assert parse_slo(" ttft = 1.5e-1s ") == pytest.approx({"ttft": 0.15})
    assert parse_slo("") == {}


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("ttft=2", "ttft=2"),
        ("ttft=2s,tpot=fast", "tpot=fast"),
        ("ttft=2s,latency=1s", "latency=1s"),
        ("ttft=2s,ttft=1s", "ttft=1s"),
        ("ttft=0ms", "ttft=0ms"),
        ("ttft=2s,", ""),
        ("ttft=2h", "ttft=2h"),
    ],
)
def test_parse_slo_errors_name_the_bad_part(spec, bad):
    with pytest.raises(ConfigError, match=f"bad SLO part '{bad}'"):
        parse_slo(spec)

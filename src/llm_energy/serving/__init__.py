"""Online serving: an async load generator, per-request records, SLO metrics and energy attribution.

`run_load` drives an OpenAI-compatible server (vLLM, transformers serve, any OpenAI-style endpoint)
in open or closed loop and returns one `RequestRecord` per request sent, failures included;
`summarise`, `steady_state_window`, `serving_energy` and `attribute_energy` are pure functions over
those records. `servers` launches transformers serve / vLLM (or wraps a URL; each server kind is a
`ServerBackend` in `SERVERS`), `balancer` spreads
requests over replicas, `lag` detects frontend lag, and `replay_servers` runs one measured replay.
`StubServer` is a local streaming stub for tests, demos and benchmarks. Importing this
package imports httpx but nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_energy.serving.balancer import POLICIES, Balancer, Policy
from llm_energy.serving.lag import (
    FrontendLag,
    MonitorSample,
    ServerMonitor,
    WindowComparison,
    compare_windows,
    detect_frontend_lag,
)
from llm_energy.serving.loadgen import Mode, run_load, schedule_at_rate, schedule_from_trace
from llm_energy.serving.metrics import (
    EnergyAttribution,
    ServingEnergy,
    ServingSummary,
    attribute_energy,
    e2e_s,
    itl_s,
    latency_summary,
    meets_slo,
    send_lag_s,
    serving_energy,
    steady_state_window,
    summarise,
    tpot_s,
    ttft_s,
)
from llm_energy.serving.records import FAILURES, Failure, LatencySummary, RequestRecord
from llm_energy.serving.replay_run import ServingRun, replay_servers
from llm_energy.serving.request import (
    ServerKind,
    check_reachable,
    completions_url,
    prompt_text,
    prompt_token_ids,
    request_body,
    stream_request,
)
from llm_energy.serving.servers.registry import SERVERS, ServerBackend, register_server

if TYPE_CHECKING:
    from llm_energy.serving.stub import StubConfig, StubFault, StubServer

__all__ = [
    "FAILURES",
    "POLICIES",
    "SERVERS",
    "Balancer",
    "EnergyAttribution",
    "Failure",
    "FrontendLag",
    "LatencySummary",
    "Mode",
    "MonitorSample",
    "Policy",
    "RequestRecord",
    "ServerBackend",
    "ServerKind",
    "ServerMonitor",
    "ServingEnergy",
    "ServingRun",
    "ServingSummary",
    "StubConfig",
    "StubFault",
    "StubServer",
    "WindowComparison",
    "attribute_energy",
    "check_reachable",
    "compare_windows",
    "completions_url",
    "detect_frontend_lag",
    "e2e_s",
    "itl_s",
    "latency_summary",
    "meets_slo",
    "prompt_text",
    "prompt_token_ids",
    "replay_servers",
    "register_server",
    "request_body",
    "run_load",
    "schedule_at_rate",
    "schedule_from_trace",
    "send_lag_s",
    "serving_energy",
    "steady_state_window",
    "stream_request",
    "summarise",
    "tpot_s",
    "ttft_s",
]


_STUB_NAMES = ("StubConfig", "StubFault", "StubServer")


def __getattr__(name: str) -> Any:
    # Loaded on first use: `python -m llm_energy.serving.stub` runs that module as __main__, and
    # importing it here too (every import of this package) makes runpy warn that it was imported
    # before being executed.
    if name in _STUB_NAMES:
        from llm_energy.serving import stub

        return getattr(stub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Load generator: real requests to a stub server on 127.0.0.1, and request-function invariants on
scripted streams through httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import numpy as np
import pytest

from llm_energy.errors import ConfigError
from llm_energy.records import Request
from llm_energy.serving import (
    RequestRecord,
    StubConfig,
    StubServer,
    check_reachable,
    completions_url,
    prompt_token_ids,
    request_body,
    run_load,
    schedule_at_rate,
    schedule_from_trace,
    send_lag_s,
    stream_request,
    summarise,
    tpot_s,
    ttft_s,
)
from llm_energy.serving.servers.registry import server_backend
from llm_energy.workloads import Trace
from llm_energy.workloads.slo import parse_slo

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def stub() -> Iterator[Callable[..., StubServer]]:
    """Start stub servers on 127.0.0.1 (one per call) and stop them all afterwards."""
    servers: list[StubServer] = []

    def start(**config: object) -> StubServer:
        server = StubServer(StubConfig(**config)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def run(coro):  # a bound on every test's event loop: no test can hang
    async def bounded():
        async with asyncio.timeout(20):
            return await coro

    return asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- against the stub server -------------------------------------------------------------------


def test_exact_output_lengths_received_and_prompts_of_exact_length(stub):
    """vLLM kind: every request receives exactly the tokens asked for; prompts have exactly
    input_tokens ids and the body forces the length (min_tokens = max_tokens, ignore_eos)."""
    server = stub(eos_after=2)  # a real model could stop early: the body must prevent it
    reqs = [Request(i + 3, n, 0.0) for i, n in enumerate([1, 5, 17, 64])]
    records = run(run_load(server.url, reqs, timeout_s=5))
    sent = [r.index for r in records]
    assert sent == list(range(len(sent))) and 3 <= len(sent) <= 4  # 0, 0.1, 0.2 (0.3 unless the host lags)
    assert all(r.success for r in records), [r.error for r in records]
    assert [r.output_tokens_received for r in records] == [1, 5, 17, 64]
    assert [len(r.token_times_s) for r in records] == [1, 5, 17, 64]
    assert [r.input_tokens_reported for r in records] == [3, 4, 5, 6]
    for body in server.bodies:
        assert body["min_tokens"] == body["max_tokens"] and body["ignore_eos"] is True
        assert all(isinstance(t, int) for t in body["prompt"])
    assert sorted(len(b["prompt"]) for b in server.bodies) == [3, 4, 5, 6]


def test_openai_kind_reports_the_short_lengths_actually_received(stub):
    """Without a way to suppress EOS the server stops early; the records say so, as successes."""
    server = stub(eos_after=3)
    records = run(run_load(server.url, [Request(4, 10, 0.0)] * 3, server_kind="openai", timeout_s=5))
    assert all(r.success and r.output_tokens_received == 3 for r in records)
    assert "min_tokens" not in server.bodies[0] and "ignore_eos" not in server.bodies[0]
    assert summarise(records).short_outputs == 3


def test_transformers_kind_counts_from_usage_without_done_line(stub):
    """transformers serve: 422 on ignore_eos/min_tokens, no [DONE]; EOS is suppressed through
    generation_config and the length comes from the usage chunk (tokens packed 4 per chunk)."""
    server = stub(
        eos_after=2, send_done=False, tokens_per_chunk=4, rejected_fields=("ignore_eos", "min_tokens")
    )
    reqs = [Request(8, 10, 0.0), Request(8, 3, 0.0)]
    records = run(run_load(server.url, reqs, server_kind="transformers", timeout_s=5))
    assert all(r.success for r in records), [r.error for r in records]
    assert [r.output_tokens_received for r in records] == [10, 3]
    assert [len(r.token_times_s) for r in records] == [3, 1]
    assert json.loads(server.bodies[0]["generation_config"]) == {"eos_token_id": -1}

    refused = run(run_load(server.url, reqs, server_kind="vllm", timeout_s=5))
    assert [(r.success, r.failure, r.status_code) for r in refused] == [(False, "http", 422)] * 2


def test_failures_are_recorded_with_reasons_never_dropped(stub):
    """500s, truncated streams, hangs (timeouts) and in-stream errors each give a failed record with
    its reason; the successful requests around them are unaffected and the run stays bounded."""
    server = stub(faults={7: "500", 8: "truncate", 9: "hang", 10: "stream-error"})
    lengths = [4, 7, 8, 9, 10, 5, 7, 9]
    reqs = [Request(6, n, 0.005 * i) for i, n in enumerate(lengths)]
    t0 = time.perf_counter()
    records = run(run_load(server.url, reqs, timeout_s=0.5))
    assert time.perf_counter() - t0 < 3.0
    assert len(records) == len(reqs)
    assert [r.failure for r in records] == [
        None,
        "http",
        "truncated",
        "timeout",
        "stream-error",
        None,
        "http",
        "timeout",
    ]
    assert records[1].status_code == 500 and "500" in (records[1].error or "")
    assert records[2].output_tokens_received == 4  # half the chunks arrived before the cut
    assert all(r.error for r in records if not r.success)
    summary = summarise(records, parse_slo("ttft=1s"))
    assert (summary.requests, summary.ok, summary.failed) == (8, 2, 6)
    assert summary.failures == {"http": 2, "truncated": 1, "timeout": 2, "stream-error": 1}
    assert summary.slo_attainment_pct == pytest.approx(25.0)


def test_open_loop_sends_on_schedule(stub):
    """Open loop at 50 req/s (Poisson) for 2 s: no request leaves more than 2 ms early, and sends follow
    the schedule (a loose sanity bound; the precision is measured by benchmarks/loadgen_accuracy.py, not by
    a timed unit test)."""
    server = stub(token_delay_s=0.002)
    reqs = schedule_at_rate([Request(16, 8)] * 100, 50.0, np.random.default_rng(0))
    records = run(run_load(server.url, reqs, timeout_s=5))
    assert all(r.success for r in records)
    lag_s = np.array([send_lag_s(r) for r in records])
    assert np.median(lag_s) < 0.25
    assert lag_s.min() > -0.002
    t0 = min(r.scheduled_s for r in records) - reqs[0].arrival_s
    assert [r.scheduled_s - t0 for r in records] == pytest.approx([q.arrival_s for q in reqs])


def test_closed_loop_never_exceeds_n_in_flight(stub):
    """Closed loop with N users: the server never sees more than N completions at once (and does see
    N: the users are kept busy); the records never overlap more than N deep either."""
    server = stub(token_delay_s=0.002)
    records = run(run_load(server.url, [Request(8, 6)] * 40, mode="closed", concurrency=4, timeout_s=5))
    assert len(records) == 40 and all(r.success for r in records)
    assert server.max_in_flight == 4
    edges = sorted([(r.sent_s, 1) for r in records] + [(r.done_s, -1) for r in records])
    depth = np.cumsum([d for _, d in edges])
    assert depth.max() <= 4


def test_open_loop_concurrency_cap(stub):
    """An open loop with a concurrency cap keeps at most that many requests in flight."""
    server = stub(token_delay_s=0.002)
    records = run(run_load(server.url, [Request(8, 10, 0.0)] * 12, concurrency=3, timeout_s=5))
    assert all(r.success for r in records)
    assert server.max_in_flight <= 3


def test_max_duration_bounds_the_run(stub):
    """No request is sent after max_duration_s; those sent are all recorded."""
    server = stub()
    reqs = [Request(4, 2, 0.1 * i) for i in range(100)]  # a 10 s schedule
    t0 = time.perf_counter()
    records = run(run_load(server.url, reqs, max_duration_s=0.35, timeout_s=5))
    assert time.perf_counter() - t0 < 1.5
    sent = [r.index for r in records]
    assert sent == list(range(len(sent))) and 3 <= len(sent) <= 4  # 0, 0.1, 0.2 (0.3 unless the host lags)
    long = [Request(4, 20)] * 100  # ~40 ms each: 2 users finish about 10 in 0.2 s
    closed = run(run_load(server.url, long, mode="closed", concurrency=2, max_duration_s=0.2, timeout_s=5))
    assert 2 <= len(closed) < 30 and all(r.success for r in closed)
    assert max(r.sent_s for r in closed) < min(r.scheduled_s for r in closed) + 0.2


def test_unreachable_url_is_a_config_error_before_measuring():
    """Nothing listening: ConfigError naming the URL, quickly, and run_load sends nothing."""
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot reach a server at http://127\.0\.0\.1"):
        run(check_reachable(url, timeout_s=2))
    with pytest.raises(ConfigError, match="cannot reach"):
        run(run_load(url, [Request(4, 4, 0.0)], timeout_s=2))
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(ConfigError, match="server URL"):
        run(check_reachable("localhost:8000"))


def test_invalid_run_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="concurrency"):
        run(run_load("http://127.0.0.1:1", [Request(1, 1)], mode="closed"))
    with pytest.raises(ConfigError, match="arrival_s"):
        run(run_load("http://127.0.0.1:1", [Request(1, 1)], mode="open"))
    with pytest.raises(ConfigError, match="mode"):
        run(run_load("http://127.0.0.1:1", [Request(1, 1, 0.0)], mode="burst"))


# --- request function on scripted streams (httpx.MockTransport) --------------------------------


class ManualClock:
    """A clock that moves only when told to (the scripted stream advances it per chunk)."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s


def scripted(clock: ManualClock, lines: list[tuple[float, str]], status: int = 200) -> httpx.AsyncClient:
    """A client whose server answers with `lines`, each after advancing `clock` by its delay."""

    def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for delay_s, line in lines:
                clock.advance(delay_s)
                yield f"{line}\n\n".encode()

        return httpx.Response(status, content=body())

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def chunk(text: str, finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "text": text, "finish_reason": finish}]})


def usage(prompt: int, completion: int) -> str:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return "data: " + json.dumps({"choices": [], "usage": usage})


def send(client: httpx.AsyncClient, clock: ManualClock, n: int = 4) -> RequestRecord:
    body = request_body(list(range(5)), n, length_fields=server_backend("vllm").length_fields(n))
    return run(
        stream_request(
            client, "http://x/v1/completions", body, index=0, scheduled_s=0.0, clock=clock, timeout_s=5
        )
    )


def test_token_times_come_from_the_chunks_and_lengths_from_usage():
    """TTFT = first chunk − send; one token time per token-carrying chunk; usage overrides the count;
    TPOT = (E2E − TTFT)/(n − 1) on the scripted times."""
    clock = ManualClock()
    lines = [(0.5, chunk("a")), (0.1, chunk("b")), (0.1, chunk("")), (0.1, chunk("c", "length"))]
    lines += [(0.0, usage(5, 6)), (0.0, "data: [DONE]")]  # 6 tokens in 4 chunks
    record = send(scripted(clock, lines), clock)
    assert record.success and record.status_code == 200
    assert record.token_times_s == pytest.approx((0.5, 0.6, 0.7, 0.8))
    assert ttft_s(record) == pytest.approx(0.5)
    assert record.output_tokens_received == 6 and record.input_tokens_reported == 5
    assert tpot_s(record) == pytest.approx((0.8 - 0.5) / 5)


def test_chat_style_deltas_and_no_done_line_complete_the_stream():
    clock = ManualClock()
    delta = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    lines = [(0.2, ": keep-alive"), (0.0, "data: " + json.dumps(delta)), (0.1, "data: " + json.dumps(last))]
    record = send(scripted(clock, lines), clock)
    assert record.success and record.output_tokens_received == 1  # no usage: chunks are counted
    assert record.first_token_s == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("lines", "status", "failure"),
    [
        ([(0.1, chunk("a")), (0.1, chunk("b"))], 200, "truncated"),
        ([(0.1, chunk("a")), (0.0, "data: {not json")], 200, "protocol"),
        ([(0.1, 'data: {"error": {"message": "boom"}}')], 200, "stream-error"),
        ([(0.0, '{"detail": "bad request"}')], 400, "http"),
    ],
)
def test_broken_streams_become_failed_records(lines, status, failure):
    clock = ManualClock()
    record = send(scripted(clock, lines, status), clock)
    assert not record.success and record.failure == failure and record.error
    assert record.done_s >= record.sent_s


def _body(prompt: list[int], n: int, kind: str, **kw: object) -> dict[str, object]:
    return request_body(prompt, n, length_fields=server_backend(kind).length_fields(n), **kw)  # type: ignore[arg-type]


def test_request_bodies_force_output_length_per_server_kind():
    prompt = [11, 12, 13]
    vllm = _body(prompt, 9, "vllm", model="m")
    assert vllm["min_tokens"] == vllm["max_tokens"] == 9 and vllm["ignore_eos"] is True
    assert (
        vllm["stream"] is True and vllm["stream_options"] == {"include_usage": True} and vllm["model"] == "m"
    )
    tf = _body(prompt, 9, "transformers")
    assert "min_tokens" not in tf and "ignore_eos" not in tf
    assert tf["generation_config"] == '{"eos_token_id": -1}'
    oa = _body(prompt, 9, "openai", extra_body={"temperature": 0})
    assert set(oa) == {"prompt", "max_tokens", "stream", "stream_options", "temperature"}
    with pytest.raises(ConfigError, match="server kind"):
        server_backend("tgi")


def test_prompts_have_exact_length_and_are_reproducible():
    a = prompt_token_ids(100, np.random.default_rng([0, 3]))
    assert len(a) == 100 and a == prompt_token_ids(100, np.random.default_rng([0, 3]))
    assert a != prompt_token_ids(100, np.random.default_rng([0, 4]))
    assert all(1000 <= t < 20_000 for t in a)


@pytest.mark.parametrize(
    "url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/completions"]
)
def test_completions_url(url):
    assert completions_url(url) == "http://h:8000/v1/completions"


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_from_trace_windows_then_scales():
    trace = Trace(
        "t", np.array([1, 2, 3, 4, 5]), np.array([5, 4, 3, 2, 1]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    )
    reqs = schedule_from_trace(trace, time_scale=2.0, window=(1.0, 2.5))
    assert [(r.input_tokens, r.output_tokens) for r in reqs] == [(2, 4), (3, 3), (4, 2)]
    assert [r.arrival_s for r in reqs] == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(ConfigError, match="no arrival times"):
        schedule_from_trace(Trace("n", np.array([1]), np.array([1])))
    with pytest.raises(ConfigError, match="no request"):
        schedule_from_trace(trace, window=(10.0, 1.0))


def test_schedule_at_rate_keeps_lengths_and_is_seeded():
    lengths = [Request(i + 1, 2 * i + 1) for i in range(2000)]
    poisson = schedule_at_rate(lengths, 20.0, np.random.default_rng(1))
    assert [(r.input_tokens, r.output_tokens) for r in poisson] == [
        (r.input_tokens, r.output_tokens) for r in lengths
    ]
    assert poisson == schedule_at_rate(lengths, 20.0, np.random.default_rng(1))
    bursty = schedule_at_rate(lengths, 20.0, np.random.default_rng(1), burstiness=0.5)
    for reqs in (poisson, bursty):
        times = np.array([r.arrival_s for r in reqs])
        assert np.all(np.diff(times) >= 0)
        assert len(times) / times[-1] == pytest.approx(20.0, rel=0.1)


def test_empty_text_completion_chunks_are_tokens_but_role_deltas_are_not():
    """vLLM sends a chunk per token, with empty text while a character is incomplete: it counts.
    A chat stream's opening role delta (empty content) and a bare finish chunk do not."""
    clock = ManualClock()
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    lines = [
        (0.1, "data: " + json.dumps(role)),
        (0.1, chunk("")),
        (0.1, chunk("a")),
        (0.1, chunk("", "length")),
    ]
    record = send(scripted(clock, lines + [(0.0, "data: [DONE]")]), clock)
    assert record.success and record.token_times_s == pytest.approx((0.2, 0.3))

"""Load generator for online serving: schedules, SLO specs, and the async open/closed-loop driver.

A serving energy figure depends on the load, so the load is set explicitly and recorded per request:

- **schedules** are lists of `Request`s whose `arrival_s` is the send offset from the start of the
  run: a trace's own timestamps (`schedule_from_trace`, with a window and a time scale) or a
  Poisson / gamma process at a chosen rate (`schedule_at_rate`, through `workloads.arrivals` with an
  explicit rng);
- **open loop** (`run_load(mode="open")`) sends each request at its scheduled time whatever the
  server's state, so queueing shows in the latencies; **closed loop** (`mode="closed"`) keeps
  `concurrency` users busy, each sending its next request when its last one finished;
- the run is **bounded in count** (the list given) **and in time**: no request is sent after
  `max_duration_s`, and each in-flight request ends within its `timeout_s`, so a run lasts at most
  `max_duration_s + timeout_s`;
- **nothing is dropped**: every sent request comes back as a `RequestRecord`, failures included
  (see `request.stream_request`); requests not yet due at `max_duration_s` are not sent and not
  recorded (their number is logged);
- an unreachable server raises `ConfigError` before the clock starts (`check_reachable`);
- with several URLs a client-side `Balancer` picks the replica of each request at send time
  (`policy`), and each record names its replica;
- with `watch` (e.g. a launched server's `exit_reason`), a server that dies ends the run: nothing
  more is sent, every request not yet sent gets a failed record (`server-exit`) with the reason,
  and failures seen after the death carry the reason too, so the partial run is kept whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import httpx
import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.records import Request
from llm_energy.serving.balancer import Balancer
from llm_energy.serving.records import RequestRecord
from llm_energy.serving.request import (
    TOKEN_ID_RANGE,
    ServerKind,
    check_reachable,
    completions_url,
    prompt_text,
    prompt_token_ids,
    request_body,
    stream_request,
)
from llm_energy.serving.servers.registry import server_backend
from llm_energy.workloads.arrivals import gamma_arrivals, poisson_arrivals
from llm_energy.workloads.traces import Trace

__all__ = [
    "Mode",
    "check_reachable",
    "run_load",
    "schedule_at_rate",
    "schedule_from_trace",
]

_log = logging.getLogger(__name__)

_Send = Callable[[int, float], Awaitable[RequestRecord]]

WATCH_PERIOD_S = 0.1
"""How often `run_load` asks `watch` whether the server died."""


class _Death:
    """Whether (and when, and why) the watched server died during the run."""

    def __init__(self, watched: bool) -> None:
        self.watched = watched
        self.event = asyncio.Event()
        self.reason: str | None = None
        self.at_s: float | None = None


Mode = Literal["open", "closed"]
"""`open`: send at the scheduled times; `closed`: keep N users busy."""


def schedule_from_trace(
    trace: Trace, time_scale: float = 1.0, window: tuple[float, float] | None = None
) -> list[Request]:
    """Return the trace's requests sent at its own timestamps.

    The window `(start_s, duration_s)` is cut first, in the trace's own seconds, and the first
    request in it is re-based to 0; the times are then divided by `time_scale` (2 = twice the
    arrival rate, half the span), as `Trace.scale_time` does.

    Raises:
        ConfigError: If the trace has no arrival times, the window is invalid or holds no request,
            or time_scale is not a finite number > 0.
    """
    if trace.arrival_s is None:
        raise ConfigError(f"trace {trace.name} has no arrival times: use schedule_at_rate instead")
    if window is not None:
        trace = trace.window(*window)
        if not len(trace):
            raise ConfigError(f"trace {trace.name}: no request arrives in window {window}")
    return trace.scale_time(time_scale).requests()


def schedule_at_rate(
    lengths: Trace | Sequence[Request],
    rate_per_s: float,
    rng: np.random.Generator,
    burstiness: float = 1.0,
) -> list[Request]:
    """Return the requests of `lengths` (in order) sent at a Poisson or gamma process of `rate_per_s`.

    Burstiness 1 is a Poisson process (`poisson_arrivals`); otherwise gaps are gamma-distributed
    with that shape (`gamma_arrivals`, vLLM's `--burstiness`). Arrival times the input may hold are
    replaced.

    Raises:
        ConfigError: If rate_per_s or burstiness is not a finite number > 0.
    """
    reqs = lengths.requests() if isinstance(lengths, Trace) else list(lengths)
    if burstiness == 1.0:
        arrival_s = poisson_arrivals(len(reqs), rate_per_s, rng)
    else:
        arrival_s = gamma_arrivals(len(reqs), rate_per_s, burstiness, rng)
    return [
        Request(r.input_tokens, r.output_tokens, t) for r, t in zip(reqs, arrival_s.tolist(), strict=True)
    ]


def _check_run(
    requests: Sequence[Request],
    mode: str,
    concurrency: int | None,
    timeout_s: float,
    max_duration_s: float | None,
) -> None:
    if mode not in ("open", "closed"):
        raise ConfigError(f"mode must be 'open' or 'closed', got {mode!r}")
    if mode == "closed" and concurrency is None:
        raise ConfigError("closed loop needs concurrency (the number of users)")
    if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
        raise ConfigError(f"concurrency must be an integer ≥ 1, got {concurrency!r}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigError(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ConfigError(f"max_duration_s must be > 0, got {max_duration_s!r}")
    for i, r in enumerate(requests):
        if r.input_tokens < 1 or r.output_tokens < 1:
            raise ConfigError(f"request {i}: input_tokens and output_tokens must be ≥ 1")
        if mode == "open" and (r.arrival_s is None or not math.isfinite(r.arrival_s) or r.arrival_s < 0):
            raise ConfigError(f"request {i}: open loop needs a finite arrival_s ≥ 0, got {r.arrival_s!r}")


async def run_load(
    url: str | Sequence[str],
    requests: Sequence[Request],
    *,
    mode: Mode = "open",
    concurrency: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
    timeout_s: float = 60.0,
    max_duration_s: float | None = None,
    server_kind: ServerKind = "vllm",
    client: httpx.AsyncClient | None = None,
    model: str | None = None,
    seed: int = 0,
    extra_body: Mapping[str, Any] | None = None,
    token_id_range: tuple[int, int] = TOKEN_ID_RANGE,
    check: bool = True,
    policy: str = "round-robin",
    prompt_words: Sequence[str] | None = None,
    watch: Callable[[], str | None] | None = None,
    balancer: Balancer | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[RequestRecord]:
    """Drive a server with `requests` and return one record per request sent, in index order.

    Args:
        url: Server base URL (`http://host:port`, `.../v1` or `.../v1/completions`), or one URL
            per replica.
        requests: What to send. Open loop: each request's `arrival_s` is its send offset in seconds
            from the start of the run; closed loop ignores it and sends in list order.
        mode: `open` (send at the scheduled times) or `closed` (keep `concurrency` users busy).
        concurrency: Closed loop: number of users (required). Open loop: optional cap on requests
            in flight; a request waiting for a slot is sent late, and its lag shows in its record.
        clock: Clock in real seconds (it paces the open loop); every record time is a reading of it.
            Share it with the `EnergyMeter` to put meter windows on the same axis.
        timeout_s: Bound on each request, stream included, in seconds.
        max_duration_s: No request is sent after this many seconds from the start; None: no bound.
        server_kind: How the output length is forced: a kind of `servers.registry.SERVERS`.
        client: HTTP client; by default one without connection limits that ignores proxy
            environment variables (a proxy would distort latencies). Pass your own to use a proxy;
            its connection limits then also cap the requests in flight.
        model: The `model` field of each body; None leaves it out (vLLM serves its one model).
        seed: Prompts are random token ids; request i's prompt depends only on (seed, i).
        extra_body: Fields added to every request body.
        token_id_range: Prompt token ids are drawn from [low, high).
        check: Check that the server answers before starting (`check_reachable`).
        policy: With several URLs: `round-robin` or `least-outstanding` (see `balancer`).
        prompt_words: Make text prompts of these one-token words instead of token ids.
        watch: Returns why the server died, or None while it runs; polled every
            `WATCH_PERIOD_S` (see the module docstring).
        balancer: A balancer to use (and inspect afterwards); None: a new one with `policy`.
        on_progress: Called with (requests sent, requests done) after each send and each
            completion, on the event loop's thread (keep it quick: it delays the loop).

    While the load runs, the objects alive at its start are frozen out of the garbage collector
    (`gc.freeze`, undone at the end): a full collection would stall the open loop's pacing.

    Returns:
        One `RequestRecord` per request sent, successes and failures alike, sorted by index.

    Raises:
        ConfigError: On invalid arguments, or when nothing answers at `url` (before measuring).
    """
    _check_run(requests, mode, concurrency, timeout_s, max_duration_s)
    backend = server_backend(server_kind)  # an unknown kind fails before anything is sent
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ConfigError("no server URL given")
    endpoints = [completions_url(u) for u in urls]
    lb = balancer or Balancer(len(urls), policy)
    if len(lb.outstanding) != len(urls):
        raise ConfigError(f"the balancer has {len(lb.outstanding)} replicas but {len(urls)} URLs were given")
    words = tuple(prompt_words) if prompt_words is not None else None
    death = _Death(watch is not None)
    own = client is None
    http = client or httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None), trust_env=False
    )
    try:
        if check:
            for u in urls:
                await check_reachable(u, http, timeout_s=min(timeout_s, 10.0))

        counts = [0, 0]  # sent, done

        def progressed(sent: int, done: int) -> None:
            counts[0] += sent
            counts[1] += done
            if on_progress is not None:
                on_progress(counts[0], counts[1])

        async def send(index: int, scheduled_s: float) -> RequestRecord:
            req = requests[index]
            if death.event.is_set():
                return _unsent(req, index, scheduled_s, clock(), death.reason)
            rng = np.random.default_rng([seed, index])
            prompt: list[int] | str = (
                prompt_text(req.input_tokens, rng, words)
                if words is not None
                else prompt_token_ids(req.input_tokens, rng, token_id_range)
            )
            body = request_body(
                prompt,
                req.output_tokens,
                length_fields=backend.length_fields(req.output_tokens),
                model=model,
                extra_body=extra_body,
            )
            replica = lb.acquire()
            progressed(1, 0)
            try:
                return await stream_request(
                    http,
                    endpoints[replica],
                    body,
                    index=index,
                    scheduled_s=scheduled_s,
                    clock=clock,
                    timeout_s=timeout_s,
                    input_tokens=req.input_tokens,
                    replica=replica,
                )
            finally:
                lb.release(replica)
                progressed(0, 1)

        # A full collection mid-run stalls the loop (measured: 18 ms) and delays every send due
        # meanwhile; collect now and freeze what exists, as other serving benchmarks do.
        gc.collect()
        gc.freeze()
        t0_s = clock()
        deadline_s = math.inf if max_duration_s is None else t0_s + max_duration_s
        watcher = asyncio.create_task(_watch(watch, death, clock)) if watch is not None else None
        try:
            if mode == "open":
                records = await _open_loop(requests, send, t0_s, deadline_s, clock, concurrency, death)
            else:
                assert concurrency is not None  # checked by _check_run
                records = await _closed_loop(len(requests), send, deadline_s, clock, concurrency, death)
        finally:
            if watcher is not None:
                watcher.cancel()
        if watch is not None and not death.event.is_set() and (reason := watch()) is not None:
            death.reason, death.at_s = reason, clock()  # died after the last poll
        if death.reason is not None:
            records = _after_death(records, requests, t0_s, death, clock)
    finally:
        gc.unfreeze()
        if own:
            await http.aclose()
    if len(records) < len(requests):
        _log.info("max_duration_s reached: %d of %d requests sent", len(records), len(requests))
    failed = sum(not r.success for r in records)
    _log.info("load done: %d requests sent, %d failed", len(records), failed)
    return sorted(records, key=lambda r: r.index)


async def _watch(watch: Callable[[], str | None], death: _Death, clock: Callable[[], float]) -> None:
    """Poll `watch` until it reports a death; then record it and wake the dispatchers."""
    while True:
        reason = watch()
        if reason is not None:
            death.reason, death.at_s = reason, clock()
            _log.warning("server died during the run: %s", reason)
            death.event.set()
            return
        await asyncio.sleep(WATCH_PERIOD_S)


def _unsent(req: Request, index: int, scheduled_s: float, now_s: float, reason: str | None) -> RequestRecord:
    return RequestRecord(
        index=index,
        scheduled_s=scheduled_s,
        sent_s=now_s,
        first_token_s=None,
        done_s=now_s,
        token_times_s=(),
        input_tokens=req.input_tokens,
        output_tokens_requested=req.output_tokens,
        output_tokens_received=0,
        success=False,
        error=f"not sent: {reason}",
        failure="server-exit",
    )


def _after_death(
    records: list[RequestRecord],
    requests: Sequence[Request],
    t0_s: float,
    death: _Death,
    clock: Callable[[], float],
) -> list[RequestRecord]:
    """Add a `server-exit` record for every request never sent; tag failures seen after the death."""
    at_s = death.at_s if death.at_s is not None else clock()
    out = []
    for r in records:
        late = not r.success and r.failure != "server-exit" and r.done_s >= at_s - 2 * WATCH_PERIOD_S
        out.append(dataclasses.replace(r, error=f"{r.error} [{death.reason}]") if late else r)
    seen = {r.index for r in records}
    for index, req in enumerate(requests):
        if index not in seen:
            out.append(_unsent(req, index, t0_s + (req.arrival_s or 0.0), at_s, death.reason))
    return out


async def _open_loop(
    requests: Sequence[Request],
    send: _Send,
    t0_s: float,
    deadline_s: float,
    clock: Callable[[], float],
    concurrency: int | None,
    death: _Death,
) -> list[RequestRecord]:
    """Send each request at t0 + arrival_s (one dispatcher sleeping until each due time)."""
    slots = asyncio.Semaphore(concurrency) if concurrency is not None else None

    async def one(index: int, due_s: float) -> RequestRecord:
        if slots is None:
            return await send(index, due_s)
        async with slots:
            return await send(index, due_s)

    order = sorted(range(len(requests)), key=lambda i: requests[i].arrival_s or 0.0)
    tasks: list[asyncio.Task[RequestRecord]] = []
    try:
        for index in order:
            due_s = t0_s + (requests[index].arrival_s or 0.0)
            if due_s >= deadline_s:
                break
            delay_s = due_s - clock()
            if delay_s > 0 and not death.watched:
                await asyncio.sleep(delay_s)
            elif delay_s > 0 and not death.event.is_set():
                # Sleep until due, or until the server dies (then stop sending at once).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(death.event.wait(), delay_s)
            if death.event.is_set():
                break
            tasks.append(asyncio.create_task(one(index, due_s)))
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # a no-op for finished tasks; stops the rest if we were cancelled


async def _closed_loop(
    count: int,
    send: _Send,
    deadline_s: float,
    clock: Callable[[], float],
    concurrency: int,
    death: _Death,
) -> list[RequestRecord]:
    """Keep `concurrency` users busy: each takes the next request as soon as its last one is done."""
    pending = iter(range(count))
    records: list[RequestRecord] = []

    async def user() -> None:
        for index in pending:  # one shared iterator: each request goes to exactly one user
            now_s = clock()
            if now_s >= deadline_s or death.event.is_set():
                return
            records.append(await send(index, now_s))

    users = [asyncio.create_task(user()) for _ in range(min(concurrency, count))]
    try:
        await asyncio.gather(*users)
    finally:
        for task in users:
            task.cancel()
    return records

"""Per-request records of an online-serving run, and the latency summary the metrics return.

The load generator writes exactly one `RequestRecord` per request it sent, whether the request
succeeded or not (vLLM's `RequestFuncOutput` habit): a failure is a record with `success=False` and
a reason, never a missing row. Every metric is then a pure function over these records
(`serving.metrics`).

All `*_s` times of a record are readings of the run's clock in seconds (by default
`time.perf_counter`), not offsets from the start of the run. Sharing that clock with an
`EnergyMeter` therefore puts meter windows and request timelines on one axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["FAILURES", "Failure", "LatencySummary", "RequestRecord"]

Failure = Literal[
    "timeout", "http", "truncated", "connection", "transport", "protocol", "stream-error", "server-exit"
]
"""Why a request failed.

- `timeout`: no complete answer within the request's `timeout_s` (connect, read or total).
- `http`: the server answered with a non-2xx status (`status_code` holds it).
- `truncated`: the stream ended (or the connection closed) before its end marker: no `[DONE]` line,
  no choice with a `finish_reason` and no usage chunk.
- `connection`: the connection could not be opened (refused, reset before any answer).
- `transport`: any other transport error of the HTTP client.
- `protocol`: the server sent something that is not OpenAI-style SSE (bad JSON in a `data:` line).
- `stream-error`: the server reported an error inside the stream (`data: {"error": ...}`).
- `server-exit`: the launched server died during the run: the request was never sent (its
  `sent_s` and `done_s` are the moment the death was seen); requests in flight then fail with their
  own kind and the exit reason appended to `error`.
"""

FAILURES: tuple[Failure, ...] = get_args(Failure)


@dataclass(frozen=True)
class RequestRecord:
    """One sent request: its timeline, its lengths and its outcome.

    Attributes:
        index: Position of the request in the list given to `run_load`.
        scheduled_s: Clock time at which the request was due to be sent (open loop: run start +
            the request's arrival offset; closed loop: the time a user became free to send it).
        sent_s: Clock time just before the request was handed to the HTTP client.
        first_token_s: Clock time of the first stream chunk that carried output tokens; None if no
            token arrived.
        done_s: Clock time at which the request finished: the end of its stream, or the moment
            its failure was observed.
        token_times_s: Clock time of every stream chunk that carried output tokens, in order. A
            server may pack several tokens into one chunk, so its length can be below
            `output_tokens_received`.
        input_tokens: Prompt length sent, in tokens (the prompt is a list of exactly this many
            token ids).
        output_tokens_requested: Output length asked for (`max_tokens`, and `min_tokens` where
            the server kind supports it).
        output_tokens_received: Output tokens received: the final usage chunk's
            `completion_tokens` when the server sent one, else the number of token-carrying chunks.
        success: True when the stream completed with a 2xx status.
        error: Human-readable reason of a failure; None on success.
        failure: Machine-readable kind of a failure (see `Failure`); None on success.
        status_code: HTTP status of the answer; None when no answer arrived.
        input_tokens_reported: The server's own prompt token count (usage `prompt_tokens`), None
            when the server sent no usage; a mismatch with `input_tokens` means the prompt was not
            taken verbatim.
        replica: Index of the replica (server) the request went to; 0 with a single server.
    """

    index: int
    scheduled_s: float
    sent_s: float
    first_token_s: float | None
    done_s: float
    token_times_s: tuple[float, ...]
    input_tokens: int
    output_tokens_requested: int
    output_tokens_received: int
    success: bool
    error: str | None = None
    failure: Failure | None = None
    status_code: int | None = None
    input_tokens_reported: int | None = None
    replica: int = 0


@dataclass(frozen=True)
class LatencySummary:
    """Distribution of one latency metric, in seconds.

    Percentiles use numpy's default (linear interpolation between order statistics).

    Attributes:
        count: Number of values summarised (≥ 1).
        mean_s: Mean in seconds.
        p50_s: Median in seconds.
        p90_s: 90th percentile in seconds.
        p99_s: 99th percentile in seconds.
        max_s: Largest value in seconds.
    """

    count: int
    mean_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float

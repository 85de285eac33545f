"""One streaming completion request against an OpenAI-compatible server, turned into one record.

This is the request function of the load generator (vLLM's `endpoint_request_func` role). It
promises:

- the prompt is a list of exactly `input_tokens` token ids, and the body forces the output length
  as far as the server kind allows (`request_body`);
- the stream is read line by line as Server-Sent Events; the clock is read once per `data:` line,
  and every chunk carrying output tokens gets a token time (a completion chunk with `text`, empty
  or not, unless it only carries a `finish_reason`; a chat chunk with non-empty `delta.content`);
- the output length is the final usage chunk's `completion_tokens` when the server sends one (vLLM
  with `stream_options.include_usage`, transformers serve), otherwise the number of token chunks;
- whatever happens (status ≥ 400, timeout, reset, truncated stream, bad JSON), the caller gets a
  `RequestRecord`; only cancellation of the calling task propagates.

`check_reachable` is the pre-flight check: it fails with a `ConfigError` before anything is measured
when nothing answers at the URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.serving.records import Failure, RequestRecord

__all__ = [
    "ServerKind",
    "check_reachable",
    "completions_url",
    "prompt_text",
    "prompt_token_ids",
    "request_body",
    "stream_request",
]

_log = logging.getLogger(__name__)

ServerKind = str
"""A server kind registered in `servers.registry.SERVERS` (`vllm`, `transformers`, `openai`, ...):
how a server lets the client force the output length."""

Clock = Callable[[], float]

TOKEN_ID_RANGE: tuple[int, int] = (1000, 20_000)
"""Prompt token ids are drawn uniformly from [low, high): above the special tokens of common
vocabularies and below the size of every vocabulary we serve (≥ 32k)."""

_ERROR_BODY_CHARS = 300


def completions_url(url: str) -> str:
    """Return the `/v1/completions` endpoint of a server given by its base URL.

    `http://host:8000`, `http://host:8000/v1` and `http://host:8000/v1/completions` all give
    `http://host:8000/v1/completions`.

    Raises:
        ConfigError: If the URL is not an http(s) URL with a host.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise ConfigError(f"invalid server URL {url!r}: {e}") from e
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"server URL must look like http://host:port, got {url!r}")
    base = url.rstrip("/")
    if base.endswith("/v1/completions"):
        return base
    if base.endswith("/v1"):
        return base + "/completions"
    return base + "/v1/completions"


def prompt_token_ids(
    input_tokens: int, rng: np.random.Generator, token_id_range: tuple[int, int] = TOKEN_ID_RANGE
) -> list[int]:
    """Return a prompt of exactly `input_tokens` random token ids drawn from `token_id_range`.

    Raises:
        ConfigError: If input_tokens < 1 or the range is empty.
    """
    low, high = token_id_range
    if input_tokens < 1:
        raise ConfigError(f"a prompt needs at least 1 token, got {input_tokens}")
    if not 0 <= low < high:
        raise ConfigError(f"token id range must satisfy 0 ≤ low < high, got {token_id_range}")
    return [int(t) for t in rng.integers(low, high, size=input_tokens)]


def prompt_text(input_tokens: int, rng: np.random.Generator, words: tuple[str, ...] | list[str]) -> str:
    """Return a text prompt of exactly `input_tokens` tokens: that many words that are one token each.

    For servers that take only text prompts (transformers serve); the words come with the server's
    tokenizer (`servers.transformers.write_checkpoint`), which guarantees one token per word.

    Raises:
        ConfigError: If input_tokens < 1 or there are no words.
    """
    if input_tokens < 1:
        raise ConfigError(f"a prompt needs at least 1 token, got {input_tokens}")
    if not words:
        raise ConfigError("no prompt words to build a text prompt from")
    picks = rng.integers(0, len(words), size=input_tokens)
    return "".join(words[int(i)] for i in picks)


def request_body(
    prompt: list[int] | str,
    output_tokens: int,
    *,
    length_fields: Mapping[str, Any] | None = None,
    model: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the JSON body of a streaming completion of exactly `output_tokens` tokens.

    Every body gets `max_tokens` and `stream_options.include_usage`; `length_fields` are what the
    server kind adds to force the length (`ServerBackend.length_fields`: vLLM `min_tokens` and
    `ignore_eos`, transformers serve an EOS-less generation config, a plain OpenAI endpoint nothing,
    so it may stop early at EOS and the records show the length received). `extra_body` entries are
    added last and override the above.

    Raises:
        ConfigError: If output_tokens < 1.
    """
    if output_tokens < 1:
        raise ConfigError(f"output_tokens must be ≥ 1, got {output_tokens}")
    body: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model is not None:
        body["model"] = model
    body.update(length_fields or {})
    body.update(extra_body or {})
    return body


class _StreamFailure(Exception):
    """Internal: the stream showed a failure of the given kind."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure: Failure = failure


@dataclass
class _Stream:
    """What has been read of one SSE stream so far."""

    token_times_s: list[float] = field(default_factory=list)
    done: bool = False
    finished: bool = False
    completion_tokens: int | None = None
    prompt_tokens: int | None = None

    @property
    def complete(self) -> bool:
        return self.done or self.finished

    def feed(self, line: str, now_s: float) -> None:
        """Take one line of the stream, read at clock time `now_s`."""
        line = line.strip()
        if not line.startswith("data:"):
            return  # blank separators, `:` comments, `event:`/`id:` fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError as e:
            raise _StreamFailure("protocol", f"data line is not JSON: {data[:80]!r}") from e
        if not isinstance(chunk, dict):
            raise _StreamFailure("protocol", f"data line is not a JSON object: {data[:80]!r}")
        if chunk.get("error"):
            raise _StreamFailure("stream-error", f"server error in stream: {str(chunk['error'])[:200]}")
        choices = chunk.get("choices") or []
        carried = False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            finish = choice.get("finish_reason")
            delta = choice.get("delta")
            if isinstance(delta, dict):
                # Chat streams open with a role-only delta whose content is empty: not a token.
                carried = carried or bool(delta.get("content"))
            elif "text" in choice:
                # vLLM emits a completion chunk per token, with empty text while the detokenizer
                # holds back an incomplete character; only a bare finish chunk carries nothing.
                carried = carried or bool(choice["text"]) or finish is None
            self.finished = self.finished or finish is not None
        if carried:
            self.token_times_s.append(now_s)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("completion_tokens"), int):
                self.completion_tokens = usage["completion_tokens"]
            if isinstance(usage.get("prompt_tokens"), int):
                self.prompt_tokens = usage["prompt_tokens"]
            # The final usage chunk has no choices; with continuous usage stats every chunk has
            # usage, so only a choice-less one marks the end.
            self.finished = self.finished or not choices


async def stream_request(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    *,
    index: int,
    scheduled_s: float,
    clock: Clock,
    timeout_s: float,
    input_tokens: int | None = None,
    replica: int = 0,
) -> RequestRecord:
    """Send one streaming completion and return its record; never raises for a failed request.

    Args:
        client: The HTTP client (inject one with `httpx.MockTransport` in tests).
        url: The full completions endpoint (see `completions_url`).
        body: The request body (see `request_body`); a text prompt needs `input_tokens`.
        index: The request's position in the run.
        scheduled_s: Clock time at which the request was due.
        clock: Clock giving seconds; the record's times are its readings.
        timeout_s: Bound on the whole request, stream included, in seconds.
        input_tokens: Prompt length in tokens; None: the length of a token-id prompt.
        replica: Replica index recorded with the request.

    Returns:
        The record: `success` True only for a 2xx answer whose stream reached its end marker
        (`[DONE]`, a `finish_reason`, or a final usage chunk).
    """
    stream = _Stream()
    status_code: int | None = None
    failure: Failure | None = None
    error: str | None = None
    sent_s = clock()
    try:
        async with asyncio.timeout(timeout_s), client.stream("POST", url, json=body, timeout=timeout_s) as r:
            status_code = r.status_code
            if not r.is_success:
                text = (await r.aread()).decode(errors="replace")[:_ERROR_BODY_CHARS]
                raise _StreamFailure("http", f"HTTP {status_code}: {text}")
            # Read to the end of the body even after `[DONE]`, so the connection goes back to the
            # pool instead of being closed (a new connection per request would add to its latency).
            async for line in r.aiter_lines():
                if not stream.done:
                    stream.feed(line, clock())
        if not stream.complete:
            raise _StreamFailure(
                "truncated", f"stream ended before its end marker after {len(stream.token_times_s)} chunks"
            )
    except _StreamFailure as e:
        failure, error = e.failure, str(e)
    except (TimeoutError, httpx.TimeoutException) as e:
        failure, error = "timeout", f"no complete answer within {timeout_s} s ({type(e).__name__})"
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        # Before any status line the connection broke; after it, the stream was cut short.
        failure = "connection" if status_code is None else "truncated"
        error = f"{type(e).__name__}: {e}"
    except httpx.ConnectError as e:
        failure, error = "connection", f"cannot connect to {url}: {e}"
    except httpx.HTTPError as e:
        failure, error = "transport", f"{type(e).__name__}: {e}"
    done_s = clock()
    if failure is not None:
        _log.debug("request %d failed (%s): %s", index, failure, error)
    received = stream.completion_tokens if stream.completion_tokens is not None else len(stream.token_times_s)
    return RequestRecord(
        index=index,
        scheduled_s=scheduled_s,
        sent_s=sent_s,
        first_token_s=stream.token_times_s[0] if stream.token_times_s else None,
        done_s=done_s,
        token_times_s=tuple(stream.token_times_s),
        input_tokens=len(body["prompt"]) if input_tokens is None else input_tokens,
        output_tokens_requested=int(body["max_tokens"]),
        output_tokens_received=received,
        success=failure is None,
        error=error,
        failure=failure,
        status_code=status_code,
        input_tokens_reported=stream.prompt_tokens,
        replica=replica,
    )


async def check_reachable(url: str, client: httpx.AsyncClient | None = None, timeout_s: float = 5.0) -> None:
    """Fail fast, before anything is measured, when no server answers at `url`.

    Sends `GET <base>/v1/models`. Any HTTP answer, even 404, shows that something listens; only a
    connection failure or a timeout is an error.

    Raises:
        ConfigError: If the URL is malformed, the connection is refused or nothing answers within
            `timeout_s`; the message names the URL and the cause.
    """
    endpoint = completions_url(url).removesuffix("/completions") + "/models"
    own = client is None
    http = client if client is not None else httpx.AsyncClient(trust_env=False)
    try:
        await http.get(endpoint, timeout=timeout_s)
    except httpx.TimeoutException as e:
        raise ConfigError(f"no answer from {url} within {timeout_s} s ({type(e).__name__}): is it up?") from e
    except httpx.HTTPError as e:
        raise ConfigError(f"cannot reach a server at {url}: {type(e).__name__}: {e}") from e
    finally:
        if own:
            await http.aclose()

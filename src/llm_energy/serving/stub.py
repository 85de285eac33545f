"""A stub OpenAI-compatible streaming server on 127.0.0.1, for tests, demos and benchmarks.

It ships in the package (like `meters.simulated`), so the load generator can be exercised end to end
without a GPU: `llm-energy replay --url <stub.url>` and `benchmarks/loadgen_accuracy.py` use it too.
It speaks just enough of vLLM's `/v1/completions` streaming protocol:

- `GET /v1/models` answers 200; `POST /v1/completions` streams one SSE chunk per
  `tokens_per_chunk` tokens, `token_delay_s` apart after `first_token_delay_s`, then a final usage
  chunk (when `stream_options.include_usage` is set) and `data: [DONE]` (unless `send_done` is
  False, as in transformers serve);
- the output length is `max_tokens`, unless `eos_after` is set and the body does not suppress EOS
  (`ignore_eos`, or a `generation_config` with `eos_token_id` -1): then it stops early, as a real
  model at its EOS token would;
- faults are injected per request by its `max_tokens` (`faults={7: "500"}`): `500`, `truncate`
  (half the chunks, then the connection is closed), `hang` (nothing is sent until the server
  stops), `stream-error` (an error object inside the stream);
- `rejected_fields` answers 422 to a body holding any of them (transformers serve rejects
  `ignore_eos` and `min_tokens`);
- it counts requests in flight and remembers the largest count (`max_in_flight`);
- `busy=True` waits between tokens by spinning instead of sleeping, so the process sits at ~100% of
  one core while it streams (a frontend-bound server, for the frontend-lag detector);
- `GET /health` answers 200.

`python -m llm_energy.serving.stub --port P [--token-delay-s ...] [--busy] [--spawn-child]` runs it
as a process (the lifecycle tests start it through `ServerProcess`; `--spawn-child` leaves a
sleeping grandchild in its process group, to prove that stopping reaches it).

Standard library only (`http.server` in a thread); not for production use.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["StubConfig", "StubFault", "StubServer"]

StubFault = Literal["500", "truncate", "hang", "stream-error"]
"""A fault the stub injects into one request."""


@dataclass(frozen=True)
class StubConfig:
    """How the stub server answers.

    Attributes:
        token_delay_s: Seconds between consecutive token chunks.
        first_token_delay_s: Seconds before the first token chunk (a stand-in for prefill).
        tokens_per_chunk: Tokens packed into each chunk (the last may hold fewer).
        send_done: End the stream with `data: [DONE]` (False imitates transformers serve).
        eos_after: Stop after this many tokens unless the body suppresses EOS; None: never.
        faults: Fault to inject by the request's `max_tokens`.
        rejected_fields: Body fields answered with 422.
        hang_s: Longest a `hang` fault waits (it ends sooner when the server stops).
    """

    token_delay_s: float = 0.002
    first_token_delay_s: float = 0.0
    tokens_per_chunk: int = 1
    send_done: bool = True
    eos_after: int | None = None
    faults: Mapping[int, StubFault] = field(default_factory=dict)
    rejected_fields: tuple[str, ...] = ()
    hang_s: float = 30.0
    busy: bool = False


def _eos_suppressed(body: Mapping[str, Any]) -> bool:
    if body.get("ignore_eos"):
        return True
    config = body.get("generation_config")
    try:
        parsed = json.loads(config) if isinstance(config, str) else config
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("eos_token_id") == -1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small write per token: Nagle would hold them back
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def _json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, payload: Mapping[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        data = f"data: {text}\n\n".encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def do_GET(self) -> None:
        """Answer `/v1/models` (the reachability check) and `/health`."""
        if self.path.rstrip("/") == "/health":
            self._json(200, {"status": "ok"})
        elif self.path.rstrip("/").endswith("/v1/models"):
            self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        """Stream a completion, or inject the fault configured for its `max_tokens`."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        stub = self.server.stub
        stub.enter(body)
        left = False
        try:
            config = stub.config
            rejected = [f for f in config.rejected_fields if f in body]
            if not self.path.rstrip("/").endswith("/v1/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if rejected:
                self._json(422, {"error": {"message": f"unsupported fields: {', '.join(rejected)}"}})
                return
            max_tokens = int(body.get("max_tokens", 16))
            fault = config.faults.get(max_tokens)
            if fault == "500":
                self._json(500, {"error": {"message": "injected fault"}})
                return
            if fault == "hang":
                stub.stopping.wait(config.hang_s)
                self.close_connection = True
                return
            n = max_tokens
            if config.eos_after is not None and not _eos_suppressed(body):
                n = min(n, config.eos_after)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunks = math.ceil(n / config.tokens_per_chunk)
            if fault == "truncate":
                chunks //= 2
            stub.pause(config.first_token_delay_s)
            sent = 0
            for i in range(chunks):
                if i:
                    stub.pause(config.token_delay_s)
                k = min(config.tokens_per_chunk, n - sent)
                sent += k
                last = sent == n
                finish = ("length" if n == max_tokens else "stop") if last and fault is None else None
                choice = {"index": 0, "text": " tok" * k, "finish_reason": finish}
                self._chunk({"id": "cmpl-stub", "object": "text_completion", "choices": [choice]})
            if fault == "truncate":
                self.close_connection = True
                return
            if fault == "stream-error":
                self._chunk({"error": {"message": "injected stream error", "code": 500}})
            if (body.get("stream_options") or {}).get("include_usage"):
                prompt = body.get("prompt")
                usage = {
                    "prompt_tokens": len(prompt) if isinstance(prompt, list) else 0,
                    "completion_tokens": sent,
                    "total_tokens": (len(prompt) if isinstance(prompt, list) else 0) + sent,
                }
                self._chunk({"id": "cmpl-stub", "object": "text_completion", "choices": [], "usage": usage})
            if config.send_done:
                self._chunk("[DONE]")
            # Leave before the terminating chunk: once the client holds the whole answer it may send
            # its next request, and the in-flight count must already be down.
            stub.leave()
            left = True
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to answer
        finally:
            if not left:
                stub.leave()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    stub: StubServer


class StubServer:
    """A streaming OpenAI-compatible stub on 127.0.0.1, served from a background thread.

    Use as a context manager: `with StubServer(StubConfig(...)) as stub: ... stub.url ...`.

    Attributes:
        config: How it answers.
        stopping: Set when the server stops (it ends waits and hangs).
        bodies: The JSON body of every POST received, in arrival order.
        max_in_flight: The largest number of completions in flight at once.
    """

    def __init__(self, config: StubConfig | None = None, port: int = 0) -> None:
        self.config = config or StubConfig()
        self.stopping = threading.Event()
        self.bodies: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, `http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def in_flight(self) -> int:
        """Completions being answered now."""
        with self._lock:
            return self._in_flight

    def pause(self, delay_s: float) -> None:
        """Wait `delay_s` between chunks: sleep, or spin the CPU when `config.busy` (ends on stop)."""
        if not self.config.busy:
            self.stopping.wait(delay_s)
            return
        end_s = time.perf_counter() + delay_s
        while time.perf_counter() < end_s and not self.stopping.is_set():
            pass

    def enter(self, body: dict[str, Any]) -> None:
        """Count a completion in (called by the handler)."""
        with self._lock:
            self.bodies.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        """Count a completion out (called by the handler)."""
        with self._lock:
            self._in_flight -= 1

    def start(self) -> StubServer:
        """Start serving in a daemon thread and return self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="llm-energy-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: release hanging requests, stop the loop and close the socket."""
        self.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5.0)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the stub as a process until SIGTERM/SIGINT (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m llm_energy.serving.stub")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay-s", type=float, default=0.002)
    parser.add_argument("--first-token-delay-s", type=float, default=0.0)
    parser.add_argument("--busy", action="store_true", help="spin between tokens (~100%% of one core)")
    parser.add_argument("--no-done", action="store_true", help="no [DONE] line, like transformers serve")
    parser.add_argument("--spawn-child", action="store_true", help="leave a sleeping grandchild")
    parser.add_argument("--fail-after-s", type=float, default=None, help="exit with code 3 after this")
    parser.add_argument("--exit-at-start", action="store_true", help="exit with code 4 before serving")
    args = parser.parse_args(argv)
    print(f"stub starting on port {args.port}", flush=True)
    if args.exit_at_start:
        print("stub: injected start-up failure", flush=True)
        sys.exit(4)
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"stub child pid {child.pid}", flush=True)
    config = StubConfig(
        token_delay_s=args.token_delay_s,
        first_token_delay_s=args.first_token_delay_s,
        busy=args.busy,
        send_done=not args.no_done,
    )
    with StubServer(config, port=args.port):
        print("stub healthy", flush=True)
        t0 = time.monotonic()
        try:
            while args.fail_after_s is None or time.monotonic() - t0 < args.fail_after_s:
                time.sleep(0.05)
        except KeyboardInterrupt:
            return
    print("stub: injected crash", flush=True)
    sys.exit(3)


if __name__ == "__main__":
    main()

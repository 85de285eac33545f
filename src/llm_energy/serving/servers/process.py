"""A server run as a subprocess: free port, own process group, health wait, guaranteed stop.

`ServerProcess` promises:

- the server listens on 127.0.0.1 on a port that was free when it started, and runs in its own
  process group (`start_new_session`), so stopping it reaches every process it spawned (vLLM's engine
  core, tokenizer workers) and a Ctrl-C typed at the terminal does not hit it before we stop it;
- `start` returns only once `GET <url><health_path>` answers 200; if the process exits first or the
  health check does not pass within `startup_timeout_s`, the group is killed and an `EngineError`
  carrying the last lines of the server's log is raised;
- `stop` is idempotent and always leaves no process of the group alive: SIGTERM to the group, then
  SIGKILL after `grace_s`; it runs on normal exit, on exceptions and (through `stop_on_signals`) on
  SIGTERM/SIGINT of this process;
- `exit_reason` tells, at any moment, whether the server died (used to stop a run and keep it as
  partial).

Stdout and stderr of the server go to one log file (never to a pipe, which would block the server
once full).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from llm_energy.errors import EngineError
from llm_energy.processes import process_state
from llm_energy.serving.request import TOKEN_ID_RANGE, ServerKind

__all__ = ["LaunchSpec", "ServerProcess", "free_port", "log_tail", "stop_on_signals"]

_log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
"""Lines of the server's log quoted in a start-up error."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that is free now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a log file ('' if it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one server on a given port.

    Attributes:
        argv: The command line.
        env: Environment variables set on top of this process's environment.
        health_path: Path answered with 200 once the server can take requests.
        cwd: Working directory; None keeps this process's.
    """

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    cwd: str | None = None


class ServerProcess:
    """One OpenAI-compatible server run as a subprocess in its own process group (module docstring).

    Args:
        name: Backend name (`transformers`, `vllm`, `stub`), used in messages.
        build: Returns the `LaunchSpec` for a port.
        server_kind: How requests force the output length (see `request.request_body`).
        startup_timeout_s: Longest wait for the health check, in seconds.
        grace_s: Seconds between SIGTERM and SIGKILL when stopping.
        log_path: Where the server's stdout and stderr go; None: a new temporary file.
        prompt_words: Words that are exactly one token each; when set, prompts are text made of them
            (servers that take no token-id prompts, such as transformers serve).
        token_id_range: Token ids prompts are drawn from when prompts are token ids.
        env: Extra environment for this replica (e.g. `CUDA_VISIBLE_DEVICES`), over `build`'s.
    """

    def __init__(
        self,
        name: str,
        build: Callable[[int], LaunchSpec],
        *,
        server_kind: ServerKind,
        startup_timeout_s: float = 300.0,
        grace_s: float = 10.0,
        log_path: Path | None = None,
        prompt_words: Sequence[str] | None = None,
        token_id_range: tuple[int, int] = TOKEN_ID_RANGE,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.server_kind: ServerKind = server_kind
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.prompt_words = tuple(prompt_words) if prompt_words is not None else None
        self.token_id_range = token_id_range
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix=f"llm-energy-{name}-")) / "server.log"
        self._build = build
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self._port: int | None = None
        self._stopped = False
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        """Base URL `http://127.0.0.1:<port>` (valid once started)."""
        if self._port is None:
            raise EngineError(f"{self.name} server is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """Process id of the server's main process (its API frontend), None before start."""
        return None if self._proc is None else self._proc.pid

    def exit_reason(self) -> str | None:
        """Return why the server is gone (exit code and log tail), or None while it runs."""
        if self._proc is None or self._stopped:
            return None
        code = self._proc.poll()
        if code is None:
            return None
        tail = log_tail(self.log_path, 5).replace("\n", " | ")
        return f"{self.name} server exited with code {code} ({tail or 'empty log'})"

    def start(self) -> ServerProcess:
        """Start the server and wait until it is healthy.

        Raises:
            EngineError: The server exited or was not healthy within `startup_timeout_s`; the
                message holds the log's last lines. The process group is killed first.
        """
        if self._proc is not None:
            raise EngineError(f"{self.name} server is already started")
        self._port = free_port()
        spec = self._build(self._port)
        env = {**os.environ, **spec.env, **self._extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _log.info("starting %s server: %s (log %s)", self.name, " ".join(spec.argv), self.log_path)
        t0 = time.monotonic()
        with self.log_path.open("wb") as log:
            try:
                self._proc = subprocess.Popen(
                    list(spec.argv),
                    env=env,
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise EngineError(f"cannot start the {self.name} server ({spec.argv[0]}): {e}") from e
        self._pgid = self._proc.pid  # a new session's leader: its pid is the group id
        try:
            self._wait_healthy(spec.health_path, t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        _log.info("%s server healthy at %s after %.1f s", self.name, self.url, self.startup_s)
        return self

    def _wait_healthy(self, health_path: str, t0: float) -> None:
        assert self._proc is not None
        url = self.url + health_path
        with httpx.Client(trust_env=False, timeout=2.0) as http:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise EngineError(
                        f"the {self.name} server exited with code {code} before it was healthy; "
                        f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
                if time.monotonic() - t0 > self.startup_timeout_s:
                    raise EngineError(
                        f"the {self.name} server was not healthy at {url} within "
                        f"{self.startup_timeout_s:g} s; "
                        f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after `grace_s`. Idempotent."""
        proc, pgid = self._proc, self._pgid
        if proc is None or pgid is None or self._stopped:
            return
        self._stopped = True
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            _log.warning("%s server ignored SIGTERM for %g s: killing it", self.name, self.grace_s)
        # Children may outlive the leader (or ignore SIGTERM): kill whatever is left of the group.
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of the group (already killed, not yet reaped by init) still answer signal 0.
    return any(_pgid_of(pid) == pgid and not _zombie(pid) for pid in _pids())


def _pids() -> list[int]:
    try:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _zombie(pid: int) -> bool:
    # A pid listed a moment ago whose stat can no longer be read has gone: as good as a zombie here.
    return process_state(pid) in (None, "Z")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into `KeyboardInterrupt` inside the block, so `finally`/`with` cleanup runs.

    Python's default SIGTERM action ends the process at once, skipping every `finally`: servers
    started inside would be orphaned. SIGINT already raises `KeyboardInterrupt`. Outside the main
    thread this is a no-op (signal handlers can only be set there).
    """
    try:
        previous: Any = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")

"""Servers to replay load against: launched subprocesses (one file per backend) or an external URL.

Every server offers the small `Server` protocol: a base `url`, the `server_kind` that decides how
requests force their output length, how prompts are made (`prompt_words` for text-only servers,
else token ids in `token_id_range`), the frontend's `pid` (None when not ours) and `exit_reason`.
Server kinds are registered by name in `SERVERS` (`registry.py`): each backend class owns the
request-body fields that force the length and, when launchable, its launch command (`vllm.py`,
`transformers.py`, one file each). Launched servers (`ServerProcess`: `transformers`, `vllm`, `stub`)
are started and always stopped by `ServerGroup`, one replica per GPU through `CUDA_VISIBLE_DEVICES`;
`ExternalServer` wraps a URL that someone else runs (`--url`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from llm_energy.errors import ConfigError
from llm_energy.serving.request import TOKEN_ID_RANGE, ServerKind, completions_url
from llm_energy.serving.servers.process import LaunchSpec, ServerProcess, free_port, log_tail, stop_on_signals
from llm_energy.serving.servers.registry import (
    SERVERS,
    LaunchSettings,
    ServerBackend,
    register_server,
    server_backend,
)

__all__ = [
    "SERVERS",
    "ExternalServer",
    "LaunchSettings",
    "LaunchSpec",
    "Server",
    "ServerBackend",
    "ServerGroup",
    "ServerProcess",
    "free_port",
    "launch_servers",
    "log_tail",
    "register_server",
    "server_backend",
    "stop_on_signals",
]

_log = logging.getLogger(__name__)


@runtime_checkable
class Server(Protocol):
    """What the load generator and the monitors need of a server."""

    name: str
    server_kind: ServerKind
    prompt_words: tuple[str, ...] | None
    token_id_range: tuple[int, int]

    @property
    def url(self) -> str:
        """Base URL."""
        ...

    @property
    def pid(self) -> int | None:
        """Process id of its frontend, when it runs on this machine under our control."""
        ...

    def exit_reason(self) -> str | None:
        """Why the server is gone, or None while it runs (or when it cannot be known)."""
        ...


class ExternalServer:
    """A server someone else runs (`--url`): never started or stopped here; its death is not watched.

    Args:
        url: Base URL (checked: http(s) with a host).
        server_kind: How lengths are forced: a kind of `SERVERS` (`vllm`, `transformers`, `openai`).
        token_id_range: Token ids prompts are drawn from.
        pid: The frontend's pid, if it runs here and CPU sampling is wanted.
    """

    def __init__(
        self,
        url: str,
        server_kind: ServerKind = "vllm",
        token_id_range: tuple[int, int] = TOKEN_ID_RANGE,
        pid: int | None = None,
    ) -> None:
        completions_url(url)  # raises ConfigError on a malformed URL
        server_backend(server_kind)  # and on an unknown server kind
        self.name = "external"
        self._url = url
        self.server_kind: ServerKind = server_kind
        self.prompt_words: tuple[str, ...] | None = None
        self.token_id_range = token_id_range
        self._pid = pid

    @property
    def url(self) -> str:
        """Base URL."""
        return self._url

    @property
    def pid(self) -> int | None:
        """The frontend's pid when given."""
        return self._pid

    def exit_reason(self) -> str | None:
        """Always None: an external server's process is not ours to watch."""
        return None


class ServerGroup:
    """Start servers together (in parallel), stop them all on exit, whatever happened.

    SIGTERM inside the block becomes `KeyboardInterrupt` (`stop_on_signals`), so a killed run still
    stops its servers. If one server fails to start, the others are stopped and its error raised.
    """

    def __init__(self, servers: Sequence[ServerProcess]) -> None:
        self.servers = list(servers)
        self._signals = stop_on_signals()

    def __enter__(self) -> list[ServerProcess]:
        self._signals.__enter__()
        try:
            with ThreadPoolExecutor(max_workers=max(1, len(self.servers))) as pool:
                futures = [pool.submit(s.start) for s in self.servers]
                errors = [f.exception() for f in futures]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
        except BaseException:
            self._stop_all()
            self._signals.__exit__(None, None, None)
            raise
        return self.servers

    def _stop_all(self) -> None:
        for server in self.servers:
            try:
                server.stop()
            except Exception:  # one failed stop must not leave the others running
                _log.exception("stopping the %s server failed", server.name)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._stop_all()
        finally:
            self._signals.__exit__(exc_type, exc, tb)


def launch_servers(
    kind: str,
    model: str,
    *,
    replicas: int = 1,
    device: str = "cuda",
    mode: str = "cudagraphs",
    max_num_seqs: int = 256,
    startup_timeout_s: float | None = None,
    log_dir: Path | None = None,
    cache_root: Path | None = None,
    transformers_cb: tuple[int, int, int] = (256, 64, 2048),
    max_model_len: int | None = None,
    usage_stats: bool = False,
    max_num_batched_tokens: int | None = None,
) -> list[ServerProcess]:
    """Return (not started) `replicas` servers of `kind` for bundled architecture `model`.

    Replica i sees only GPU i (`CUDA_VISIBLE_DEVICES=i`) when `device` is `cuda`. The settings go to
    the backend (`ServerBackend.launch`), which reads those it has (see `LaunchSettings`).

    Args:
        kind: A launchable server of the registry (`transformers`, `vllm`, ...).
        model: Bundled architecture name or config path.
        replicas: Number of servers (one per GPU).
        device: `cuda` or `cpu`.
        mode: vLLM only: `cudagraphs` or `eager`.
        max_num_seqs: vLLM only: `--max-num-seqs`.
        startup_timeout_s: Health wait; None: the backend's default.
        log_dir: Where server logs go (`<kind>-<i>.log`); None: temporary files.
        cache_root: transformers only: checkpoint cache root.
        transformers_cb: transformers only: (block size, number of blocks, max batch tokens).
        max_model_len: vLLM only: `--max-model-len` (None: vLLM engine's default, 8704).
        usage_stats: vLLM only: let vLLM report usage statistics (off by default).
        max_num_batched_tokens: vLLM only: `--max-num-batched-tokens` (None: vLLM's server default).

    Raises:
        ConfigError: Unknown kind or model, replicas < 1, or a bad device; before anything starts.
    """
    from llm_energy.architectures import load_architecture

    launchers = SERVERS.launchable()
    if kind not in launchers:
        raise ConfigError(f"unknown server {kind!r}; expected one of {', '.join(launchers)}")
    if isinstance(replicas, bool) or replicas < 1:
        raise ConfigError(f"replicas must be an integer ≥ 1, got {replicas!r}")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"server device must be cuda or cpu, got {device!r}")
    arch = load_architecture(model)
    settings = LaunchSettings(
        device=device,
        mode=mode,
        max_num_seqs=max_num_seqs,
        max_model_len=max_model_len,
        max_num_batched_tokens=max_num_batched_tokens,
        usage_stats=usage_stats,
        cache_root=cache_root,
        transformers_cb=transformers_cb,
    )
    backend = SERVERS[kind]
    return [
        backend.launch(
            arch,
            settings,
            env={"CUDA_VISIBLE_DEVICES": str(i)} if device == "cuda" else {},
            log_path=None if log_dir is None else log_dir / f"{kind}-{i}.log",
            startup_timeout_s=startup_timeout_s,
        )
        for i in range(replicas)
    ]

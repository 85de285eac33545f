"""Server backends by name: how a request forces its output length, and how a server is launched.

Each server kind is one `ServerBackend` class: `length_fields` adds what its API needs to return
exactly the tokens asked for (vLLM: `min_tokens` and `ignore_eos`), and a launchable one builds a
`ServerProcess` for a replica (`launch`) after sizing the settings for a replay (`sized_for`). The
built-in classes are imported on first use (`vllm`, `transformers`, and `openai` for any other
OpenAI-compatible endpoint, which is never launched here); `register_server` adds one from outside
the package, as does a distribution publishing a class under the entry-point group
`llm_energy.servers` (docs/extending.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llm_energy.errors import ConfigError
from llm_energy.plugins import PluginRegistry

if TYPE_CHECKING:
    from llm_energy.architectures import Architecture
    from llm_energy.records import Request
    from llm_energy.serving.servers.process import ServerProcess

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "llm_energy.servers"
"""Entry-point group under which other distributions publish `ServerBackend` classes."""


@dataclass(frozen=True)
class LaunchSettings:
    """What `--server` launches with; each backend reads the settings it has and ignores the rest.

    Attributes:
        device: `cuda` (replica i sees GPU i only) or `cpu`.
        mode: vLLM: `cudagraphs` or `eager`.
        max_num_seqs: vLLM: `--max-num-seqs`.
        max_model_len: vLLM: `--max-model-len` (None: sized for the replay, else vLLM's default).
        max_num_batched_tokens: vLLM: `--max-num-batched-tokens`, the chunked-prefill token budget per step
            (None: vLLM's default for its API server, 8192 on an H100/H200, where the offline `LLM` uses
            16384: a profile calibrated offline states its own, and a replay meant to match it passes it).
        usage_stats: vLLM: let it report usage statistics (off by default).
        cache_root: transformers: checkpoint cache root (None: the default).
        transformers_cb: transformers: (block size, number of blocks, max batch tokens).
    """

    device: str = "cuda"
    mode: str = "cudagraphs"
    max_num_seqs: int = 256
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    usage_stats: bool = False
    cache_root: Path | None = None
    transformers_cb: tuple[int, int, int] = (256, 64, 2048)


class ServerBackend:
    """A server kind. This base is the plain OpenAI-compatible endpoint: `max_tokens` only, not launched.

    Subclasses set `name`, override `length_fields`, and, when llm-energy can start them, set
    `launchable` and implement `launch` (and `sized_for` when the replay decides a setting).
    """

    name: ClassVar[str] = "openai"
    launchable: ClassVar[bool] = False
    settings: ClassVar[frozenset[str]] = frozenset()
    """The `LaunchSettings` fields this backend reads (the CLI refuses the others' flags for it)."""

    @classmethod
    def length_fields(cls, output_tokens: int) -> dict[str, Any]:
        """Request-body fields (beyond `max_tokens`) that force exactly `output_tokens` tokens."""
        del output_tokens
        return {}

    @classmethod
    def sized_for(
        cls, settings: LaunchSettings, requests: Sequence[Request], arch: Architecture
    ) -> tuple[LaunchSettings, list[str]]:
        """Return `settings` fitted to the replay's `requests` and notes saying what was decided.

        Raises:
            ConfigError: a request the server could not take (named, with the limit).
        """
        del requests, arch
        return settings, []

    @classmethod
    def launch(
        cls,
        arch: Architecture,
        settings: LaunchSettings,
        *,
        env: Mapping[str, str],
        log_path: Path | None,
        startup_timeout_s: float | None,
    ) -> ServerProcess:
        """Return one (not started) replica serving `arch`.

        Raises:
            ConfigError: this kind is not launched here (give `--url`), or its dependencies are missing.
        """
        raise ConfigError(f"server {cls.name!r} is not launched by llm-energy: give --url of a running one")


BUILTIN_SERVERS: tuple[str, ...] = (
    "llm_energy.serving.servers.vllm:VllmServer",
    "llm_energy.serving.servers.transformers:TransformersServer",
    "llm_energy.serving.servers.registry:ServerBackend",
)
"""The server classes this package ships, as `module:Class` (imported on the registry's first use)."""


def _check_server(cls: object) -> str:
    if not (isinstance(cls, type) and issubclass(cls, ServerBackend)):
        raise ConfigError(f"{cls!r} is not a ServerBackend class")
    return cls.name


class ServerRegistry(PluginRegistry[type[ServerBackend]]):
    """Server kind name → `ServerBackend` class: the built-ins, then registered and published ones."""

    def __init__(self, builtins: tuple[str, ...], group: str) -> None:
        super().__init__("server", builtins, group, _check_server)

    def launchable(self) -> tuple[str, ...]:
        """Names of the servers llm-energy can start (`--server`), sorted."""
        return tuple(sorted(name for name, cls in self.items() if cls.launchable))


SERVERS = ServerRegistry(BUILTIN_SERVERS, ENTRY_POINT_GROUP)
"""The registry: server kind → `ServerBackend` class."""


def register_server(cls: type[ServerBackend], *, replace: bool = False) -> type[ServerBackend]:
    """Register server class `cls` under its `name` (usable as a class decorator); return it.

    Raises:
        ConfigError: not a `ServerBackend`, or the name is taken and `replace` is False.
    """
    return SERVERS.register(cls, replace=replace)


def server_backend(kind: str) -> type[ServerBackend]:
    """Return the backend class of server kind `kind`.

    Raises:
        ConfigError: unknown kind; the message lists the registered ones.
    """
    if kind not in SERVERS:
        raise ConfigError(f"unknown server kind {kind!r}; expected one of {', '.join(SERVERS)}")
    return SERVERS[kind]

"""The stub server (`serving.stub`) run as a real subprocess, for lifecycle and fault tests and demos."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from llm_energy.serving.servers.process import LaunchSpec, ServerProcess

__all__ = ["stub_server"]


def stub_server(
    *,
    token_delay_s: float = 0.002,
    first_token_delay_s: float = 0.0,
    busy: bool = False,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 30.0,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    grace_s: float = 5.0,
) -> ServerProcess:
    """Return a `ServerProcess` running `python -m llm_energy.serving.stub` (see its flags there)."""

    def build(port: int) -> LaunchSpec:
        argv = [
            sys.executable,
            "-m",
            "llm_energy.serving.stub",
            "--port",
            str(port),
            "--token-delay-s",
            str(token_delay_s),
            "--first-token-delay-s",
            str(first_token_delay_s),
            *(["--busy"] if busy else []),
            *extra_args,
        ]
        return LaunchSpec(argv, {}, "/health")

    return ServerProcess(
        "stub",
        build,
        server_kind="vllm",
        startup_timeout_s=startup_timeout_s,
        env=env,
        log_path=log_path,
        grace_s=grace_s,
    )

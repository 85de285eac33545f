"""`transformers serve` in continuous-batching mode, on a random-init checkpoint written by llm-energy.

`transformers serve` loads models only from disk (or the hub, which we never reach), so
`write_checkpoint` saves a random-init model of a bundled architecture (`save_pretrained`) plus a
byte-level BPE tokenizer trained here on a synthetic corpus (`PreTrainedTokenizerFast` with a chat
template) into one directory. Traps this module handles (seen with transformers 5.17 on CPU):

- `/v1/completions` takes only text prompts: prompts are built from `prompt_words`, words that the
  tokenizer maps to exactly one token each (checked when the checkpoint is written), so a prompt of
  n words is n tokens; the server's usage `prompt_tokens` confirms it per request;
- `ignore_eos` and `min_tokens` are rejected with 422 and `min_new_tokens` is ignored under
  continuous batching: the model has no EOS (`eos_token_id=None` in config and generation config),
  so every request runs to `max_tokens`;
- the KV cache is allocated on the first request, with ~90% of memory unless all three `--cb-*`
  sizes are set: they are always set, and the caller warms up before measuring;
- the stream has no `[DONE]` line; lengths come from the final usage chunk (`request.py`).

Serving needs transformers' `serving` extra plus `requests` (its CLI imports it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llm_energy.architectures import Architecture
from llm_energy.errors import ConfigError
from llm_energy.serving.servers.process import LaunchSpec, ServerProcess
from llm_energy.serving.servers.registry import LaunchSettings, ServerBackend

__all__ = [
    "PROMPT_WORDS_FILE",
    "TransformersServer",
    "TransformersServerConfig",
    "checkpoint_dir",
    "read_prompt_words",
    "transformers_command",
    "transformers_server",
    "write_checkpoint",
]

_log = logging.getLogger(__name__)

PROMPT_WORDS_FILE = "llm_energy_prompt_words.json"
"""File in the checkpoint directory listing the one-token prompt words."""

_DONE_MARKER = ".llm_energy_complete"
_TOKENIZER_VOCAB_MAX = 4096
_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def checkpoint_dir(arch: Architecture, dtype: str, seed: int, root: Path | None = None) -> Path:
    """Return the cache directory of a written checkpoint (`$LLM_ENERGY_CACHE` or ~/.cache/llm-energy)."""
    base = root or Path(os.environ.get("LLM_ENERGY_CACHE", Path.home() / ".cache" / "llm-energy"))
    return base / "serving" / f"{arch.name}-{dtype}-seed{seed}"


def _corpus_words() -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [a + b for a in letters for b in letters]


def _train_tokenizer(vocab_size: int, seed: int) -> object:
    """Train a byte-level BPE on a synthetic corpus of two-letter words; return the `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    rng = np.random.default_rng(seed)
    words = _corpus_words()
    # Every word equally often, so merges reach whole " xy" words before anything else.
    lines = ["".join(" " + w for w in rng.permutation(words)) for _ in range(20)]
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


def write_checkpoint(
    arch: Architecture,
    directory: Path,
    *,
    dtype: str = "bfloat16",
    seed: int = 0,
    device: str = "cpu",
) -> list[str]:
    """Write a random-init checkpoint of `arch` and a local tokenizer into `directory`.

    The model is built by `architectures.build_model` (init `uniform`, as vLLM's dummy loader, so
    activations stay finite at any depth) with no EOS token, saved with `save_pretrained`; the
    tokenizer is a byte-level BPE trained here. A directory already completed by an earlier call is
    reused as is.

    Args:
        arch: Bundled architecture (its vocabulary must hold ≥ 300 tokens).
        directory: Target directory (created).
        dtype: Weight dtype saved.
        seed: Seed of the weights and of the tokenizer corpus.
        device: Where the weights are initialised (`cuda` is much faster for 8B shapes).

    Returns:
        The prompt words: strings of the form " xy" that encode to exactly one token each.

    Raises:
        ConfigError: The vocabulary is too small for a byte-level tokenizer.
    """
    if (directory / _DONE_MARKER).exists():
        return read_prompt_words(directory)
    if arch.vocab_size < 300:
        raise ConfigError(
            f"{arch.name}: vocab_size {arch.vocab_size} is too small for a byte-level tokenizer"
        )
    from transformers import PreTrainedTokenizerFast

    from llm_energy.architectures import build_model

    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=directory.parent))
    try:
        model = build_model(arch, device=device, dtype=dtype, init="uniform", seed=seed)
        model.save_pretrained(staging)  # type: ignore[operator]
        del model
        tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_object=_train_tokenizer(min(arch.vocab_size, _TOKENIZER_VOCAB_MAX), seed),
            chat_template=_CHAT_TEMPLATE,
            clean_up_tokenization_spaces=False,
        )
        words = [
            " " + w for w in _corpus_words() if len(tokenizer.encode(" " + w, add_special_tokens=False)) == 1
        ]
        if len(words) < 16:
            raise ConfigError(f"{arch.name}: only {len(words)} one-token words; vocabulary too small")
        sample = "".join(words[: min(len(words), 64)])
        if len(tokenizer.encode(sample, add_special_tokens=False)) != min(len(words), 64):
            raise ConfigError(f"{arch.name}: prompt words do not concatenate to one token each")
        tokenizer.save_pretrained(staging)
        (staging / PROMPT_WORDS_FILE).write_text(json.dumps(words), encoding="utf-8")
        for item in staging.iterdir():
            os.replace(item, directory / item.name)
        (directory / _DONE_MARKER).write_text("ok\n", encoding="utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log.info("wrote random-init %s checkpoint and tokenizer to %s", arch.name, directory)
    return words


def read_prompt_words(directory: Path) -> list[str]:
    """Return the one-token prompt words stored with a checkpoint."""
    words = json.loads((directory / PROMPT_WORDS_FILE).read_text(encoding="utf-8"))
    return [str(w) for w in words]


class TransformersServerConfig:
    """Settings of `transformers serve` (KV-cache sizes must all be set, see the module docstring).

    Args:
        device: `cpu` or `cuda` (each replica sees its own GPU as cuda through CUDA_VISIBLE_DEVICES).
        block_size: `--cb-block-size`, tokens per KV-cache block.
        num_blocks: `--cb-num-blocks`.
        max_batch_tokens: `--cb-max-batch-tokens`, tokens per continuous-batching step.
        dtype: Weight dtype of the checkpoint written.
        seed: Seed of the checkpoint.
        hf_home: Private HF_HOME for the server (a new temporary directory when None).
    """

    def __init__(
        self,
        device: str = "cpu",
        *,
        block_size: int = 256,
        num_blocks: int = 64,
        max_batch_tokens: int = 2048,
        dtype: str | None = None,
        seed: int = 0,
        hf_home: Path | None = None,
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"transformers server device must be cpu or cuda, got {device!r}")
        for name, value in (
            ("block_size", block_size),
            ("num_blocks", num_blocks),
            ("max_batch_tokens", max_batch_tokens),
        ):
            if value < 1:
                raise ConfigError(f"transformers server {name} must be ≥ 1, got {value}")
        self.device = device
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.max_batch_tokens = max_batch_tokens
        self.dtype = dtype or ("bfloat16" if device == "cuda" else "float32")
        self.seed = seed
        self.hf_home = hf_home


def transformers_command(model_dir: Path, port: int, config: TransformersServerConfig) -> list[str]:
    """Return the `transformers serve` command line (run with this interpreter)."""
    return [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        config.device,
        "--continuous-batching",
        "--cb-block-size",
        str(config.block_size),
        "--cb-num-blocks",
        str(config.num_blocks),
        "--cb-max-batch-tokens",
        str(config.max_batch_tokens),
    ]


def transformers_server(
    arch: Architecture,
    config: TransformersServerConfig,
    *,
    cache_root: Path | None = None,
    startup_timeout_s: float = 300.0,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """Write (or reuse) the checkpoint of `arch` and return a `ServerProcess` for `transformers serve`.

    Raises:
        ConfigError: The serving dependencies are missing, or the architecture cannot be served.
    """
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "openai", "requests") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"transformers serve needs {', '.join(missing)}: pip install 'transformers[serving]' requests"
        )
    directory = checkpoint_dir(arch, config.dtype, config.seed, cache_root)
    words = write_checkpoint(
        arch,
        directory,
        dtype=config.dtype,
        seed=config.seed,
        device="cuda" if config.device == "cuda" else "cpu",
    )
    hf_home = config.hf_home or Path(tempfile.mkdtemp(prefix="llm-energy-hf-home-"))
    server_env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HOME": str(hf_home),
        "TOKENIZERS_PARALLELISM": "false",
    }

    def build(port: int) -> LaunchSpec:
        return LaunchSpec(transformers_command(directory, port, config), server_env, "/health")

    return ServerProcess(
        "transformers",
        build,
        server_kind="transformers",
        startup_timeout_s=startup_timeout_s,
        prompt_words=words,
        env=env,
        log_path=log_path,
    )


class TransformersServer(ServerBackend):
    """`transformers serve`: no EOS (`generation_config = {"eos_token_id": -1}`), so lengths are exact.

    It rejects `min_tokens` and `ignore_eos` with 422, so the EOS is disabled in the generation config
    (a JSON string, as transformers serve expects it) instead.
    """

    name: ClassVar[str] = "transformers"
    launchable: ClassVar[bool] = True
    settings: ClassVar[frozenset[str]] = frozenset({"device", "cache_root", "transformers_cb"})

    @classmethod
    def length_fields(cls, output_tokens: int) -> dict[str, Any]:
        """`generation_config = '{"eos_token_id": -1}'`: no token ends the generation early."""
        del output_tokens
        return {"generation_config": json.dumps({"eos_token_id": -1})}

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
        """One replica of `transformers serve` on a checkpoint of `arch` (see `transformers_server`).

        Raises:
            ConfigError: The serving dependencies are missing, or the architecture cannot be served.
        """
        block, blocks, batch_tokens = settings.transformers_cb
        config = TransformersServerConfig(
            settings.device, block_size=block, num_blocks=blocks, max_batch_tokens=batch_tokens
        )
        timeout: dict[str, Any] = (
            {} if startup_timeout_s is None else {"startup_timeout_s": startup_timeout_s}
        )
        return transformers_server(
            arch, config, env=env, log_path=log_path, cache_root=settings.cache_root, **timeout
        )

"""Bundled model shapes and the `Architecture` record that names one.

An architecture is a Hugging Face config dict plus a name, and optionally a local checkpoint directory.
The bundled shapes (`configs/*.json`) are copies of published `config.json` files with the special-token
ids set to null, so random-weight models never stop generating early and nothing needs the network. This
module is pure Python: it must not import torch or transformers, so listing or validating models stays
instant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llm_energy.errors import ConfigError

_CONFIG_DIR = Path(__file__).resolve().parent / "configs"

ARCHITECTURE_NAMES: tuple[str, ...] = tuple(sorted(p.stem for p in _CONFIG_DIR.glob("*.json")))
"""Names of the bundled architectures, sorted."""


@dataclass(frozen=True)
class Architecture:
    """A model shape: a Hugging Face config dict, a name and, for real checkpoints, a local directory.

    The shape properties read the Llama/Qwen2 config keys; a key missing from the config raises `ConfigError`
    naming the key, so a non-Llama-style checkpoint can still be built but not counted.

    Attributes:
        name: Bundled name (``"llama-3.1-8b"``) or the checkpoint directory's name.
        config: The Hugging Face config dict, ``model_type`` included (read-only).
        path: Local checkpoint directory holding ``config.json`` and weights, or None for a bundled shape.
    """

    name: str
    config: Mapping[str, Any] = field(hash=False)
    path: str | None = None

    def _require(self, key: str) -> Any:
        try:
            return self.config[key]
        except KeyError:
            raise ConfigError(f"architecture {self.name!r}: config has no {key!r}") from None

    @property
    def model_type(self) -> str:
        """Transformers model type, e.g. ``"llama"`` or ``"qwen2"``."""
        return str(self._require("model_type"))

    @property
    def num_layers(self) -> int:
        """Number of decoder layers (``num_hidden_layers``)."""
        return int(self._require("num_hidden_layers"))

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream."""
        return int(self._require("hidden_size"))

    @property
    def intermediate_size(self) -> int:
        """Width of the gated MLP's inner projection."""
        return int(self._require("intermediate_size"))

    @property
    def num_heads(self) -> int:
        """Number of query heads (``num_attention_heads``)."""
        return int(self._require("num_attention_heads"))

    @property
    def num_kv_heads(self) -> int:
        """Number of key/value heads (grouped-query attention); `num_heads` when the config omits it."""
        value = self.config.get("num_key_value_heads")
        return self.num_heads if value is None else int(value)

    @property
    def head_dim(self) -> int:
        """Per-head width: the config's ``head_dim`` if set, else ``hidden_size // num_heads``."""
        value = self.config.get("head_dim")
        return self.hidden_size // self.num_heads if value is None else int(value)

    @property
    def vocab_size(self) -> int:
        """Number of token ids (rows of the embedding and of the lm_head)."""
        return int(self._require("vocab_size"))

    @property
    def max_context_tokens(self) -> int:
        """Longest sequence the model supports, in tokens (``max_position_embeddings``)."""
        return int(self._require("max_position_embeddings"))

    @property
    def tie_embeddings(self) -> bool:
        """Whether the lm_head shares the input embedding matrix.

        Defaults to False when the config omits ``tie_word_embeddings``, the Llama and Qwen2 config default.
        """
        return bool(self.config.get("tie_word_embeddings", False))


def architecture_names() -> list[str]:
    """Return the bundled architecture names, sorted.

    Returns:
        A new list, safe to modify.
    """
    return list(ARCHITECTURE_NAMES)


def _read_config(config_file: Path) -> dict[str, Any]:
    try:
        text = config_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {config_file}: {exc}") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{config_file} must hold a JSON object, not {type(config).__name__}")
    if "model_type" not in config:
        raise ConfigError(f"{config_file} has no 'model_type'")
    return config


def load_architecture(name_or_path: str) -> Architecture:
    """Return the bundled architecture called `name_or_path`, or the one described by a local directory.

    A bundled name wins over a directory of the same name in the working directory. A directory must hold a
    Hugging Face ``config.json``; the architecture then takes the directory's name and keeps its path so that
    `build_model` loads the real weights from it.

    Args:
        name_or_path: A name from `ARCHITECTURE_NAMES`, or a path to a checkpoint directory.

    Returns:
        The architecture, with a read-only config.

    Raises:
        ConfigError: The name is neither bundled nor an existing directory (the message lists the bundled
            names), or the directory's ``config.json`` is missing, unreadable, not JSON or has no model_type.
    """
    if name_or_path in ARCHITECTURE_NAMES:
        config = _read_config(_CONFIG_DIR / f"{name_or_path}.json")
        return Architecture(name=name_or_path, config=MappingProxyType(config), path=None)
    directory = Path(name_or_path).expanduser()
    if not directory.is_dir():
        raise ConfigError(
            f"unknown architecture {name_or_path!r}: not a bundled name and not a directory; "
            f"bundled names are: {', '.join(ARCHITECTURE_NAMES)}"
        )
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{config_file} not found: a checkpoint directory needs a Hugging Face config.json")
    config = _read_config(config_file)
    resolved = directory.resolve()
    return Architecture(name=resolved.name, config=MappingProxyType(config), path=str(resolved))


def check_lengths(arch: Architecture, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
    """Check that a batch of requests is possible for `arch`.

    Args:
        arch: The architecture the requests run on.
        input_tokens: Prompt length per request, in tokens; at least 1.
        output_tokens: Generated length per request, in tokens; at least 1.
        batch_size: Requests in the batch; at least 1.

    Raises:
        ConfigError: A value is not a positive integer, or ``input_tokens + output_tokens`` exceeds
            ``arch.max_context_tokens``; the message names the value and the limit.
    """
    for label, value in (
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("batch_size", batch_size),
    ):
        # bool is an int subclass; True as a token count is a bug, not a 1.
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{label} must be a positive integer (>= 1), got {value!r}")
    total_tokens = input_tokens + output_tokens
    if total_tokens > arch.max_context_tokens:
        raise ConfigError(
            f"input_tokens + output_tokens = {input_tokens} + {output_tokens} = {total_tokens} exceeds "
            f"{arch.name}'s max_context_tokens = {arch.max_context_tokens}"
        )

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_energy.architectures import (
    ARCHITECTURE_NAMES,
    Architecture,
    architecture_names,
    check_lengths,
    load_architecture,
)
from llm_energy.errors import ConfigError

EXPECTED_NAMES = (
    "llama-3.1-70b",
    "llama-3.1-8b",
    "llama-3.2-1b",
    "mixtral-8x7b",
    "olmo-1b",
    "olmo-7b",
    "olmoe-1b-7b",
    "qwen2.5-0.5b",
    "tiny",
)


def test_bundled_names_are_sorted_and_complete() -> None:
    assert ARCHITECTURE_NAMES == EXPECTED_NAMES
    names = architecture_names()
    names.append("mutated")
    assert architecture_names() == list(EXPECTED_NAMES)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_bundled_configs_never_stop_generation_early(name: str) -> None:
    """Special-token ids are null in every bundled config, so a random model always runs to length."""
    arch = load_architecture(name)
    assert arch.name == name
    assert arch.path is None
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        assert key in arch.config
        assert arch.config[key] is None
    expected_dtype = "float32" if name == "tiny" else "bfloat16"
    assert arch.config["dtype"] == expected_dtype


def test_llama_3_1_8b_shape() -> None:
    arch = load_architecture("llama-3.1-8b")
    assert arch.model_type == "llama"
    assert (arch.num_layers, arch.hidden_size, arch.intermediate_size) == (32, 4096, 14336)
    assert (arch.num_heads, arch.num_kv_heads, arch.head_dim) == (32, 8, 128)
    assert arch.vocab_size == 128256
    assert arch.max_context_tokens == 131072
    assert arch.tie_embeddings is False
    assert arch.config["rope_scaling"]["rope_type"] == "llama3"
    assert arch.config["rope_theta"] == 500000.0


def test_llama_3_2_1b_and_qwen_shapes() -> None:
    llama = load_architecture("llama-3.2-1b")
    assert (llama.num_layers, llama.hidden_size, llama.head_dim, llama.num_kv_heads) == (16, 2048, 64, 8)
    assert llama.tie_embeddings is True
    assert llama.config["rope_scaling"]["factor"] == 32.0
    qwen = load_architecture("qwen2.5-0.5b")
    assert qwen.model_type == "qwen2"
    assert (qwen.num_layers, qwen.hidden_size, qwen.num_heads, qwen.num_kv_heads) == (24, 896, 14, 2)
    assert qwen.head_dim == 64
    assert qwen.vocab_size == 151936
    assert qwen.max_context_tokens == 32768
    assert qwen.tie_embeddings is True


def test_tiny_shape() -> None:
    arch = load_architecture("tiny")
    assert (arch.hidden_size, arch.num_layers, arch.num_heads, arch.num_kv_heads) == (64, 2, 4, 2)
    assert (arch.intermediate_size, arch.vocab_size, arch.max_context_tokens) == (128, 512, 4096)
    assert arch.head_dim == 16
    assert arch.tie_embeddings is False


def test_config_is_read_only() -> None:
    arch = load_architecture("tiny")
    with pytest.raises(TypeError):
        arch.config["hidden_size"] = 1  # type: ignore[index]


def test_architecture_is_hashable_and_compares_by_value() -> None:
    assert load_architecture("tiny") == load_architecture("tiny")
    assert hash(load_architecture("tiny")) == hash(load_architecture("tiny"))
    assert load_architecture("tiny") != load_architecture("llama-3.2-1b")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="llama-3.1-8b") as info:
        load_architecture("llama-9000")
    message = str(info.value)
    assert "llama-9000" in message
    for name in EXPECTED_NAMES:
        assert name in message


def test_local_directory_loads(tmp_path: Path) -> None:
    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    config = dict(load_architecture("tiny").config)
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")
    arch = load_architecture(str(checkpoint))
    assert arch.name == "my-model"
    assert arch.path == str(checkpoint.resolve())
    assert arch.hidden_size == 64
    assert dict(arch.config) == config


def test_directory_without_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config.json"):
        load_architecture(str(tmp_path))


def test_directory_with_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="config.json") as info:
        load_architecture(str(tmp_path))
    assert "JSON" in str(info.value)


@pytest.mark.parametrize("content", ["[1, 2]", '{"hidden_size": 64}'])
def test_directory_with_wrong_json_content_is_rejected(tmp_path: Path, content: str) -> None:
    (tmp_path / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="config.json"):
        load_architecture(str(tmp_path))


def test_missing_config_key_names_the_key() -> None:
    arch = Architecture(name="partial", config={"model_type": "llama"}, path=None)
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        _ = arch.num_layers


def test_check_lengths_accepts_up_to_the_context_limit() -> None:
    arch = load_architecture("tiny")
    check_lengths(arch, 1, 1)
    check_lengths(arch, 4000, 96, batch_size=64)


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "batch_size", "label"),
    [
        (0, 8, 1, "input_tokens"),
        (8, 0, 1, "output_tokens"),
        (8, 8, 0, "batch_size"),
        (-1, 8, 1, "input_tokens"),
        (8, 8, -4, "batch_size"),
    ],
)
def test_check_lengths_rejects_non_positive_values(
    input_tokens: int, output_tokens: int, batch_size: int, label: str
) -> None:
    with pytest.raises(ConfigError, match=label):
        check_lengths(load_architecture("tiny"), input_tokens, output_tokens, batch_size)


def test_check_lengths_rejects_sequences_beyond_the_context_limit() -> None:
    with pytest.raises(ConfigError, match="4096") as info:
        check_lengths(load_architecture("tiny"), 4000, 97)
    assert "4097" in str(info.value)
    assert "max_context_tokens" in str(info.value)


def test_import_does_not_load_torch_or_transformers() -> None:
    """Importing the package stays light: torch and transformers load only when a model is built."""
    code = (
        "import sys, llm_energy.architectures as a\n"
        "a.param_count(a.load_architecture('llama-3.1-8b'))\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]

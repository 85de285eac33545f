from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_energy.architectures import (  # noqa: E402
    SUPPORTED_DTYPES,
    UNIFORM_INIT_BOUND,
    build_model,
    load_architecture,
    supported_dtypes,
    torch_dtype,
)
from llm_energy.errors import ConfigError  # noqa: E402


def _tiny(**kwargs: object) -> torch.nn.Module:
    return build_model(load_architecture("tiny"), dtype="float32", **kwargs)  # type: ignore[arg-type]


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_tiny_forward_returns_logits_per_position() -> None:
    model = _tiny()
    input_ids = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids).logits
    assert logits.shape == (2, 8, 512)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_model_is_in_eval_mode_and_never_stops_at_eos() -> None:
    model = _tiny()
    assert not model.training
    assert model.config.eos_token_id is None
    assert model.generation_config.eos_token_id is None
    assert model.generation_config.pad_token_id is None


def test_generate_runs_to_the_requested_length() -> None:
    model = _tiny()
    input_ids = torch.zeros((2, 4), dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        output = model.generate(
            input_ids, attention_mask=attention_mask, max_new_tokens=6, min_new_tokens=6, do_sample=False
        )
    assert output.shape == (2, 10)


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
def test_weights_have_the_requested_dtype(dtype: str) -> None:
    model = build_model(load_architecture("tiny"), dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}


def test_unsupported_dtype_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bfloat16"):
        build_model(load_architecture("tiny"), dtype="int8")
    assert supported_dtypes() == ["bfloat16", "float16", "float32"]
    assert torch_dtype("float16") is torch.float16


def test_unknown_init_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="uniform"):
        _tiny(init="ones")


def test_invalid_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="device"):
        _tiny(device="not-a-device")


def test_uniform_init_stays_within_bound() -> None:
    """init="uniform" draws every floating parameter from [-1e-3, 1e-3], norms included (vLLM dummy)."""
    model = _tiny(init="uniform")
    for name, parameter in model.named_parameters():
        assert parameter.abs().max().item() <= UNIFORM_INIT_BOUND, name
        assert parameter.abs().max().item() > 0.5 * UNIFORM_INIT_BOUND, name


def test_zeros_init_zeroes_every_parameter() -> None:
    model = _tiny(init="zeros")
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())


def test_normal_init_differs_from_uniform() -> None:
    normal, uniform = _tiny(init="normal"), _tiny(init="uniform")
    assert not _same_weights(normal, uniform)
    std = normal.config.initializer_range
    q_proj = normal.model.layers[0].self_attn.q_proj.weight
    assert q_proj.std().item() == pytest.approx(std, rel=0.1)


@pytest.mark.parametrize("init", ["normal", "uniform"])
def test_same_seed_gives_identical_weights(init: str) -> None:
    assert _same_weights(_tiny(init=init, seed=3), _tiny(init=init, seed=3))
    assert not _same_weights(_tiny(init=init, seed=3), _tiny(init=init, seed=4))


def test_build_leaves_the_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    _tiny(seed=7)
    assert torch.equal(torch.rand(4), expected)


def test_local_checkpoint_loads_its_weights(tmp_path: Path) -> None:
    """A directory holding a saved checkpoint loads its real weights; init and seed are ignored."""
    saved = _tiny(init="uniform", seed=5)
    checkpoint = tmp_path / "tiny-checkpoint"
    saved.save_pretrained(checkpoint)
    arch = load_architecture(str(checkpoint))
    assert arch.path is not None
    loaded = build_model(arch, dtype="float32", init="zeros", seed=0)
    assert _same_weights(saved, loaded)
    assert loaded.config.eos_token_id is None
    assert not loaded.training


def test_directory_without_weights_is_a_config_error(tmp_path: Path) -> None:
    config = dict(load_architecture("tiny").config)
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        build_model(load_architecture(str(tmp_path)), dtype="float32")

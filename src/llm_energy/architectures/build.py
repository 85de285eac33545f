"""Turn an `Architecture` into a runnable transformers model: local checkpoint weights, else random ones.

Energy depends on shape far more than on weight values, so a random-weight model lets us measure any bundled
shape without downloading it. Random models are built directly on the target device, so an 8B model appears
on a GPU in seconds instead of being initialised on the CPU and copied. Every model comes back in eval mode
with its end-of-sequence and padding ids cleared, so generation always runs to the requested length.

torch and transformers are imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import TYPE_CHECKING, Any, Literal, get_args

from llm_energy.architectures.registry import Architecture
from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    import torch

Init = Literal["normal", "uniform", "zeros"]
"""Weight initialisation of a random model: see `build_model`."""

INIT_SCHEMES: tuple[str, ...] = get_args(Init)
"""The accepted values of `build_model`'s ``init``."""

SUPPORTED_DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
"""Weight dtypes `build_model` accepts, by torch name."""

UNIFORM_INIT_BOUND = 1e-3
"""Half-width of the ``init="uniform"`` interval, as in vLLM's dummy weight loader."""


def supported_dtypes() -> list[str]:
    """Return the weight dtype names `build_model` accepts.

    Returns:
        A new list, safe to modify.
    """
    return list(SUPPORTED_DTYPES)


def torch_dtype(name: str) -> torch.dtype:
    """Return the torch dtype called `name`.

    Args:
        name: One of `SUPPORTED_DTYPES`.

    Returns:
        The torch dtype.

    Raises:
        ConfigError: `name` is not supported; the message lists the supported names.
    """
    if name not in SUPPORTED_DTYPES:
        raise ConfigError(f"unsupported dtype {name!r}; supported: {', '.join(SUPPORTED_DTYPES)}")
    import torch

    dtype: torch.dtype = getattr(torch, name)
    return dtype


def hf_config(arch: Architecture) -> Any:
    """Return the transformers config of `arch` (imports transformers)."""
    from transformers import AutoConfig

    # Deep copy: transformers rewrites nested dicts (rope_scaling → rope_parameters) in place.
    kwargs = copy.deepcopy(dict(arch.config))
    model_type = kwargs.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"architecture {arch.name!r}: config has no 'model_type'")
    try:
        return AutoConfig.for_model(model_type, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"architecture {arch.name!r}: transformers rejects its config: {exc}") from exc


def _target_device(device: str) -> torch.device:
    import torch

    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from exc


def _cuda_rng_indices(target: torch.device) -> list[int]:
    import torch

    if target.type != "cuda":
        return []
    return [torch.cuda.current_device() if target.index is None else target.index]


def _overwrite_parameters(model: torch.nn.Module, init: Init, seed: int, target: torch.device) -> None:
    import torch

    with torch.no_grad():
        if init == "zeros":
            for parameter in model.parameters():
                parameter.zero_()
            return
        generator = torch.Generator(device=target)
        generator.manual_seed(seed)
        for parameter in model.parameters():
            if parameter.is_floating_point():
                parameter.uniform_(-UNIFORM_INIT_BOUND, UNIFORM_INIT_BOUND, generator=generator)


def clear_stop_tokens(model: torch.nn.Module) -> None:
    """Unset the end-of-sequence tokens of `model`, so generation runs to the length asked for."""
    config = getattr(model, "config", None)
    if config is not None:
        config.eos_token_id = None
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.eos_token_id = None
        generation_config.pad_token_id = None


def build_model(
    arch: Architecture,
    *,
    device: str = "cpu",
    dtype: str = "bfloat16",
    init: Init = "normal",
    seed: int = 0,
) -> torch.nn.Module:
    """Return a transformers causal LM for `arch`, in eval mode, on `device`, never stopping at an EOS token.

    With ``arch.path`` set, the real weights are loaded from that local directory (no network) and `init` and
    `seed` are ignored. Otherwise the model is constructed directly on `device` with random weights:

    - ``"normal"``: transformers' own init (normal with std ``initializer_range``, norms at 1), seeded with
      `seed` through torch's global generator, whose state is restored afterwards.
    - ``"uniform"``: every floating parameter uniform in ``[-1e-3, 1e-3]`` from a device generator seeded
      with `seed`, like vLLM's dummy loader (small weights keep activations finite at any depth).
    - ``"zeros"``: every parameter zero, a labelled extreme for data-dependent power.

    The same `arch`, `device`, `dtype`, `init` and `seed` give identical weights.

    Args:
        arch: The architecture.
        device: Torch device string, e.g. ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.
        dtype: Weight dtype, one of `SUPPORTED_DTYPES`.
        init: Initialisation of a random model, one of `INIT_SCHEMES`.
        seed: Seed of the random initialisation.

    Returns:
        The model (``torch.nn.Module``), in eval mode, with ``config.eos_token_id`` and the generation
        config's ``eos_token_id`` and ``pad_token_id`` set to None.

    Raises:
        ConfigError: Unsupported `dtype` or `init`, an invalid `device`, a config transformers rejects, or a
            checkpoint directory that cannot be loaded.
    """
    weight_dtype = torch_dtype(dtype)
    if init not in INIT_SCHEMES:
        raise ConfigError(f"unknown init {init!r}; supported: {', '.join(INIT_SCHEMES)}")
    target = _target_device(device)

    import torch
    from transformers import AutoModelForCausalLM

    # transformers' auto classes are only partly typed; the annotation on `model` restores the type.
    auto_model: Any = AutoModelForCausalLM
    model: torch.nn.Module
    if arch.path is not None:
        # transformers needs accelerate to load straight onto a device; without it, stage on the CPU.
        direct = target.type != "cpu" and importlib.util.find_spec("accelerate") is not None
        placement: dict[str, Any] = {"device_map": target} if direct else {}
        try:
            model = auto_model.from_pretrained(
                arch.path, dtype=weight_dtype, local_files_only=True, **placement
            )
        except OSError as exc:
            raise ConfigError(f"cannot load the checkpoint in {arch.path}: {exc}") from exc
        model = model.to(target)
    else:
        config = hf_config(arch)
        with torch.random.fork_rng(devices=_cuda_rng_indices(target)):
            torch.manual_seed(seed)
            with target:
                model = auto_model.from_config(config, dtype=weight_dtype)
        if init != "normal" and target.type != "meta":
            _overwrite_parameters(model, init, seed, target)
    clear_stop_tokens(model)
    model.eval()
    return model


def meta_param_count(arch: Architecture) -> int:
    """Return the parameter count of the transformers model for `arch`, built on torch's meta device.

    Building on the meta device allocates no memory, so this is instant even for 8B shapes. Tied weights are
    counted once. The tests use it to check `counts.param_count` against the real model code.

    Args:
        arch: The architecture (its ``path`` is ignored; only the config matters).

    Returns:
        Parameter count.

    Raises:
        ConfigError: transformers rejects the config.
    """
    import torch
    from transformers import AutoModelForCausalLM

    auto_model: Any = AutoModelForCausalLM
    config = hf_config(arch)
    with torch.device("meta"):
        model = auto_model.from_config(config)
    return int(sum(parameter.numel() for parameter in model.parameters()))


def reinit_parameters(model: torch.nn.Module, init: Literal["uniform", "zeros"], seed: int = 0) -> None:
    """Overwrite `model`'s weights in place with `init`.

    Tensor addresses are kept, so compiled CUDA graphs stay valid: the weight-sensitivity study swaps
    weights without recompiling.

    Raises:
        ConfigError: `init` is not `uniform` or `zeros`.
    """
    if init not in ("uniform", "zeros"):
        raise ConfigError(f"in-place re-init supports 'uniform' and 'zeros', not {init!r}")
    target = next(model.parameters()).device
    _overwrite_parameters(model, init, seed, target)

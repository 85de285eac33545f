"""Inference engines behind one `Engine` protocol, registered by name in `ENGINES`.

Each backend is one file with one class; the class carries its `name`, its `Config` (pydantic) and
its `descriptor` (`EngineDescriptor`: modes, extra, batching, options, estimates). `ENGINES` maps
names to those classes: the built-in ones below, then any class registered with `register_engine`
or published by an installed distribution under the entry-point group `llm_energy.engines`
(docs/extending.md). Engine modules import torch, transformers or vLLM inside their methods only, so
listing the registry stays light.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from llm_energy.engines.base import Batch, Batching, ContinuousEngine, Engine, EngineDescriptor
from llm_energy.errors import ConfigError
from llm_energy.plugins import PluginRegistry

logger = logging.getLogger(__name__)

BUILTIN_ENGINES: tuple[str, ...] = (
    "llm_energy.engines.hf:HFEngine",
    "llm_energy.engines.hf_paged:HFPagedEngine",
    "llm_energy.engines.hf_speculative:HFSpeculativeEngine",
    "llm_energy.engines.simulated:SimulatedEngine",
    "llm_energy.engines.vllm:VllmEngine",  # extra: pip install llm-energy[vllm]
)
"""The engine classes this package ships, as `module:Class` (imported on the registry's first use)."""

ENTRY_POINT_GROUP = "llm_energy.engines"
"""Entry-point group under which other distributions publish engine classes."""


def _check_engine(cls: object) -> str:
    """The engine class's name, once it has what an engine needs (`name`, `Config`, `descriptor`)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"engine class {cls!r} has no `name`")
    if not isinstance(getattr(cls, "Config", None), type):
        raise ConfigError(f"engine {name!r}: its class has no `Config` (a pydantic model)")
    if not isinstance(getattr(cls, "descriptor", None), EngineDescriptor):
        raise ConfigError(f"engine {name!r}: its class has no `descriptor` (an EngineDescriptor)")
    return name


class EngineRegistry(PluginRegistry[Any]):
    """Engine name → engine class, filled on first use with the built-ins and the entry points."""

    def __init__(self, builtins: tuple[str, ...], group: str) -> None:
        super().__init__("engine", builtins, group, _check_engine)


ENGINES = EngineRegistry(BUILTIN_ENGINES, ENTRY_POINT_GROUP)
"""The registry: engine name → engine class (with `Config` and `descriptor`)."""


def register_engine(cls: Any, *, replace: bool = False) -> Any:
    """Register engine class `cls` under its `name` (usable as a class decorator); return it.

    Raises:
        ConfigError: `cls` lacks `name`, `Config` or `descriptor`, or the name is taken.
    """
    return ENGINES.register(cls, replace=replace)


def _unknown(name: str) -> ConfigError:
    return ConfigError(f"unknown engine {name!r}; valid engines: {', '.join(sorted(ENGINES))}")


def engine_class(name: str) -> Any:
    """Return the engine class registered under `name`.

    Raises:
        ConfigError: `name` is not registered; the message lists the valid names.
    """
    if name not in ENGINES:
        raise _unknown(name)
    return ENGINES[name]


def engine_descriptor(name: str) -> EngineDescriptor:
    """Return the descriptor of engine `name`.

    Raises:
        ConfigError: `name` is not registered.
    """
    descriptor: EngineDescriptor = engine_class(name).descriptor
    return descriptor


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install is as good as none
        return False


def check_installed(name: str) -> None:
    """Check that engine `name`'s optional dependencies are installed (nothing heavy is imported).

    Raises:
        ConfigError: unknown engine, or a module it needs is missing; the message names the extra to
            install (`pip install 'llm-energy[hf]'`).
    """
    descriptor = engine_descriptor(name)
    missing = [m for m in descriptor.requires if not _importable(m)]
    if missing:
        how = f"pip install 'llm-energy[{descriptor.extra}]'" if descriptor.extra else "install them first"
        raise ConfigError(f"engine {name!r} needs {' and '.join(missing)}, not installed here: {how}")


def build_engine(name: str, arch: Any, *, tp_size: int = 1, **config: Any) -> Engine:
    """Build engine `name` for architecture `arch` (rank 0 of a tensor-parallel group when `tp_size` > 1).

    `config` fills the engine's `Config`; None values are dropped, so each engine keeps its own
    defaults (e.g. the weight init).

    Raises:
        ConfigError: unknown engine, an invalid config value (the message names the field), or a TP
            size the engine, mode, shape or visible GPUs refuse.
    """
    from pydantic import ValidationError

    cls = engine_class(name)
    fields = {k: v for k, v in config.items() if v is not None}
    if tp_size > 1:
        check_tp(name, fields.get("mode"), tp_size, arch)
        module, _, function = str(cls.descriptor.tp_builder).partition(":")
        tp_engine: Engine = getattr(importlib.import_module(module), function)(arch, tp_size, **fields)
        return tp_engine
    try:
        cfg = cls.Config(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"engine {name!r}: invalid {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from exc
    engine: Engine = cls(cfg, arch)
    return engine


def check_mode(engine: str, mode: str | None) -> str:
    """Return the mode to use for `engine` (its default when `mode` is None).

    Raises:
        ConfigError: unknown engine or a mode the engine does not have (lists the valid ones).
    """
    modes = engine_descriptor(engine).modes
    if mode is None:
        return modes[0]
    if mode not in modes:
        raise ConfigError(f"unknown mode {mode!r} for engine {engine!r}; valid modes: {', '.join(modes)}")
    return mode


def check_tp(engine: str, mode: str | None, tp_size: int, arch: Any) -> None:
    """Check a point's tensor-parallel settings: the engine and mode run TP, the shape splits.

    Raises:
        ConfigError: TP on an engine or mode that does not support it, or a size the shape refuses.
    """
    from llm_energy.parallel.checks import check_tp_shape

    if tp_size == 1:
        return
    tp_modes = engine_descriptor(engine).tp_modes
    if not tp_modes:
        tp_engines = [name for name, cls in ENGINES.items() if cls.descriptor.tp_modes]
        raise ConfigError(
            f"tp_size = {tp_size} needs engine {' or '.join(tp_engines)!r}; "
            f"engine {engine!r} runs on one device"
        )
    if mode not in tp_modes:
        raise ConfigError(
            f"tp_size = {tp_size} runs in mode {' or '.join(tp_modes)} only, not {mode!r} "
            f"(engine {engine!r} runs its other modes on one device)"
        )
    if arch is None:
        raise ConfigError(f"tp_size = {tp_size} needs a model shape to check")
    check_tp_shape(arch, tp_size)


__all__ = [
    "BUILTIN_ENGINES",
    "ENGINES",
    "ENTRY_POINT_GROUP",
    "Batch",
    "Batching",
    "ContinuousEngine",
    "Engine",
    "EngineDescriptor",
    "EngineRegistry",
    "build_engine",
    "check_installed",
    "check_mode",
    "check_tp",
    "engine_class",
    "engine_descriptor",
    "register_engine",
]

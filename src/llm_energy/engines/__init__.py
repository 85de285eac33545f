"""Inference engines behind one `Engine` protocol, registered by name in `ENGINES`.

Heavy imports (torch, transformers) happen inside the engine modules' methods, so importing this
package or listing the registry stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from llm_energy.engines.base import Batch, Engine
from llm_energy.errors import ConfigError

ENGINES: dict[str, str] = {
    "hf": "llm_energy.engines.hf:HFEngine",
    "hf-paged": "llm_energy.engines.hf_paged:HFPagedEngine",
    "hf-spec": "llm_energy.engines.hf_speculative:HFSpeculativeEngine",
    "simulated": "llm_energy.engines.simulated:SimulatedEngine",
    "vllm": "llm_energy.engines.vllm:VllmEngine",  # extra: pip install llm-energy[vllm]
}
"""The registry: engine name → `module:Class`. The one place to add an engine."""

ENGINE_MODES: dict[str, tuple[str, ...]] = {
    "hf": ("eager", "compiled", "cudagraphs"),
    "hf-paged": ("paged",),
    "hf-spec": ("eager",),
    "simulated": ("default",),
    "vllm": ("cudagraphs", "eager"),
}
"""Valid modes per engine (the first is the default)."""

ENGINE_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hf": ("hf", ("torch", "transformers")),
    "hf-paged": ("hf", ("torch", "transformers")),
    "hf-spec": ("hf", ("torch", "transformers")),
    "simulated": ("", ()),
    "vllm": ("vllm", ("vllm",)),
}
"""Per engine: the llm-energy extra that installs it and the modules it imports when it runs."""


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
    if name not in ENGINE_EXTRAS:
        raise ConfigError(f"unknown engine {name!r}; valid engines: {', '.join(sorted(ENGINES))}")
    extra, modules = ENGINE_EXTRAS[name]
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise ConfigError(
            f"engine {name!r} needs {' and '.join(missing)}, not installed here: "
            f"pip install 'llm-energy[{extra}]'"
        )


def engine_class(name: str) -> Any:
    """Import and return the engine class registered under `name`.

    Raises:
        ConfigError: `name` is not registered; the message lists the valid names.
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; valid engines: {', '.join(sorted(ENGINES))}")
    module_name, _, attr = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_engine(name: str, arch: Any, **config: Any) -> Engine:
    """Build engine `name` for architecture `arch`.

    `config` fills the engine's `Config`; None values are dropped, so each engine keeps its own
    defaults (e.g. the weight init).

    Raises:
        ConfigError: unknown engine or an invalid config value (the message names the field).
    """
    from pydantic import ValidationError

    cls = engine_class(name)
    try:
        cfg = cls.Config(**{k: v for k, v in config.items() if v is not None})
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
    if engine not in ENGINE_MODES:
        raise ConfigError(f"unknown engine {engine!r}; valid engines: {', '.join(sorted(ENGINES))}")
    modes = ENGINE_MODES[engine]
    if mode is None:
        return modes[0]
    if mode not in modes:
        raise ConfigError(f"unknown mode {mode!r} for engine {engine!r}; valid modes: {', '.join(modes)}")
    return mode


__all__ = [
    "ENGINES",
    "ENGINE_EXTRAS",
    "ENGINE_MODES",
    "Batch",
    "Engine",
    "build_engine",
    "check_installed",
    "check_mode",
    "engine_class",
]

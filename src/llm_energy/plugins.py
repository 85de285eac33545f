"""A lazy registry of backend classes by name (engines and servers use it; docs/extending.md).

Built-ins first, then classes registered in code or published by installed distributions under an entry-point
group. Filled on first use, so listing it imports only the backend modules, never torch or vLLM (those load
inside the backends' methods). A name is registered once; another class under a taken name is refused unless
`replace=True` (a test swapping a backend). A broken published plugin is logged and skipped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from llm_energy.errors import ConfigError

logger = logging.getLogger(__name__)
C = TypeVar("C")


class PluginRegistry(Mapping[str, C], Generic[C]):
    """Name → backend class.

    Args:
        kind: What the classes are, in messages ("engine", "server").
        builtins: The package's own classes as `module:Class`, imported on first use.
        group: The entry-point group other distributions publish under.
        check: Returns the class's registration name, or raises `ConfigError` saying what it lacks.
    """

    def __init__(
        self, kind: str, builtins: tuple[str, ...], group: str, check: Callable[[object], str]
    ) -> None:
        self._kind = kind
        self._builtins = builtins
        self._group = group
        self._check = check
        self._classes: dict[str, C] = {}
        self._loaded = False

    def register(self, cls: C, *, replace: bool = False) -> C:
        """Add `cls` under its name and return it (so it works as a class decorator).

        Raises:
            ConfigError: `cls` is not a valid backend class, or its name is taken and `replace` is False.
        """
        self._load()
        return self._add(cls, replace=replace)

    def unregister(self, name: str) -> None:
        """Remove `name` (nothing happens when it is not registered)."""
        self._load()
        self._classes.pop(name, None)

    def _add(self, cls: C, *, replace: bool) -> C:
        name = self._check(cls)
        taken = self._classes.get(name)
        if taken is not None and taken is not cls and not replace:
            raise ConfigError(f"{self._kind} {name!r} is registered already (by {taken!r})")
        self._classes[name] = cls
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for target in self._builtins:
            module, _, attr = target.partition(":")
            self._add(getattr(importlib.import_module(module), attr), replace=False)
        for entry in importlib.metadata.entry_points(group=self._group):
            try:
                self._add(entry.load(), replace=False)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                logger.warning("%s entry point %r not registered: %s", self._kind, entry.value, exc)

    def __getitem__(self, name: str) -> C:
        self._load()
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._classes))

    def __len__(self) -> int:
        self._load()
        return len(self._classes)

"""Meter backends by name: how each finds its devices on this machine, and the order detection tries them.

A backend is a `MeterBackend`: a name, the kind of device it reads (`gpu` or `cpu`) and a `detect`
function returning the devices it finds here and notes on what it could not. `detect_devices_of`
tries the backends of one kind in order and keeps the first that finds any device; a `fallback`
backend (the TDP estimate) is tried only after every other one found none, and its notes say why.
Backends with `auto=False` (the simulated devices) are never detected: tests and demos pass them in.

The built-in backends (`zeus`, `rapl`, `tdp`, `simulated`) are registered when `llm_energy.meters` is
imported; `register_meter` adds one from outside the package, as does an installed distribution
that publishes a `MeterBackend` under the entry-point group `llm_energy.meters` (docs/extending.md).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from llm_energy.errors import ConfigError

logger = logging.getLogger(__name__)

DeviceKind = Literal["gpu", "cpu"]

ENTRY_POINT_GROUP = "llm_energy.meters"
"""Entry-point group under which other distributions publish `MeterBackend`s."""


@dataclass(frozen=True)
class MeterBackend:
    """One way of reading energy, and how it finds its devices.

    Attributes:
        name: The backend's name (`zeus`, `rapl`, `tdp`, `simulated`, ...).
        kind: `gpu` (devices implement `GpuDevice`) or `cpu` (`CpuDevice`).
        detect: Called with the detection options as keywords (`probe_update_period`, `rapl_root`,
            `tdp_w`; a backend takes those it uses and ignores the rest); returns the devices found
            here (empty when none) and notes on what was not found.
        auto: Whether detection tries it (False: devices made by hand, like the simulated ones).
        fallback: An estimate, tried only when no other backend of its kind found a device.
        priority: Detection order within a kind, lowest first (ties: registration order).
    """

    name: str
    kind: DeviceKind
    detect: Callable[..., tuple[list[Any], list[str]]]
    auto: bool = True
    fallback: bool = False
    priority: int = 100


class MeterRegistry(Mapping[str, MeterBackend]):
    """Backend name → `MeterBackend`; entry points are read on first use."""

    def __init__(self, group: str) -> None:
        self._group = group
        self._backends: dict[str, MeterBackend] = {}
        self._entry_points_read = False

    def register(self, backend: MeterBackend, *, replace: bool = False) -> MeterBackend:
        """Add `backend` under its name and return it.

        Raises:
            ConfigError: the name is taken by another backend and `replace` is False.
        """
        taken = self._backends.get(backend.name)
        if taken is not None and taken != backend and not replace:
            raise ConfigError(f"meter {backend.name!r} is registered already")
        self._backends[backend.name] = backend
        return backend

    def unregister(self, name: str) -> None:
        """Remove backend `name` (nothing happens when it is not registered)."""
        self._backends.pop(name, None)

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for entry in importlib.metadata.entry_points(group=self._group):
            try:
                self.register(entry.load())
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break detection
                logger.warning("meter entry point %r not registered: %s", entry.value, exc)

    def __getitem__(self, name: str) -> MeterBackend:
        self._read_entry_points()
        return self._backends[name]

    def __iter__(self) -> Iterator[str]:
        self._read_entry_points()
        return iter(list(self._backends))

    def __len__(self) -> int:
        self._read_entry_points()
        return len(self._backends)

    def of_kind(self, kind: DeviceKind) -> list[MeterBackend]:
        """The auto-detected backends of `kind` in detection order (fallbacks last)."""
        found = [b for b in self.values() if b.kind == kind and b.auto]
        return sorted(found, key=lambda b: (b.fallback, b.priority))


METERS = MeterRegistry(ENTRY_POINT_GROUP)
"""The registry: meter backend name → `MeterBackend`."""


def register_meter(backend: MeterBackend, *, replace: bool = False) -> MeterBackend:
    """Register a meter backend (detection tries it from now on, in its `priority` order); return it.

    Raises:
        ConfigError: the name is taken and `replace` is False.
    """
    return METERS.register(backend, replace=replace)


def detect_devices_of(kind: DeviceKind, **options: Any) -> tuple[list[Any], list[str]]:
    """Return the devices of `kind` the first backend that finds any reads here, and the notes.

    Backends are tried in `priority` order; a fallback's notes are prefixed with why the others
    found nothing (e.g. "no readable RAPL energy counters ...: CPU energy is ESTIMATED as ...").
    """
    notes: list[str] = []
    for backend in METERS.of_kind(kind):
        devices, found = backend.detect(**options)
        if devices:
            if backend.fallback and notes:
                return devices, [f"{'; '.join(notes)}: {note}" for note in found]
            return devices, notes + found
        notes += found
    return [], notes

"""Errors raised by llm-energy. Every error the library raises on purpose is one of these.

```
LlmEnergyError
├── ConfigError            bad spec, CLI input or unknown name         → CLI exit 2
├── MeterError             an energy reading failed
│   ├── CounterUnavailable the device has no energy counter (fall back to power sampling)
│   └── CounterReset       the counter went backwards inside a window
├── EngineError            the inference engine failed
│   └── OutOfMemory        the configuration does not fit in device memory
├── StoreError             the results database cannot be opened, read or written
│   └── NotAStore          the path holds no llm-energy store (also a ConfigError → exit 2)
└── GpuSettingsError       GPU clock / power-limit control failed (never silently ignored)

MeasurementWarning (a UserWarning) flags measurements of limited quality.
```
"""

from __future__ import annotations


class LlmEnergyError(Exception):
    """Base class of every error llm-energy raises on purpose."""


class ConfigError(LlmEnergyError):
    """Bad input: an unknown name, an impossible value or a malformed spec. The CLI exits with 2."""


class MeterError(LlmEnergyError):
    """An energy or power reading failed."""


class CounterUnavailable(MeterError):
    """The device has no readable energy counter; integrate sampled power instead."""


class CounterReset(MeterError):
    """An energy counter went backwards inside a window (reset or wrap-around)."""


class EngineError(LlmEnergyError):
    """The inference engine failed."""


class OutOfMemory(EngineError):
    """The configuration does not fit in the device's memory."""


class StoreError(LlmEnergyError):
    """The results database cannot be opened, read or written."""


class NotAStore(StoreError, ConfigError):
    """The path holds no llm-energy results store (bad input, so also a `ConfigError`).

    A directory, a file that is not SQLite, another application's database, another schema
    version; for a reader also a missing or empty file. The CLI exits with 2; nothing was written to
    the path.
    """


class GpuSettingsError(LlmEnergyError):
    """Setting or restoring a GPU clock or power limit failed."""


class MeasurementWarning(UserWarning):
    """A measurement's quality is limited (short window, counter reset, estimated source).

    The same condition is also recorded in the measurement's `flags`, so it reaches the store.
    """

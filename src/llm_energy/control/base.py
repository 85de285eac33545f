"""Change a GPU's SM clock or power limit for a measurement, and always put it back.

The GPUs this runs on are shared, so a changed setting that outlives its run is a bug that hurts
other people. `apply_gpu_settings` therefore promises, in this order:

1. nothing is changed unless the caller passed `allow=True` (the CLI's `--allow-gpu-settings`) and the
   process has the privilege (`ConfigError`, CLI exit 2, otherwise);
2. every value is checked against what the GPU supports before anything is touched (`ConfigError`);
3. the original values are written atomically to a restore file *before* the first change;
4. the originals are restored on normal exit, on an exception and on SIGINT/SIGTERM;
5. the restore file is removed only after a successful restore. A failed restore raises
   `GpuSettingsError` (logged at ERROR) and keeps the file;
6. a run that died between change and restore (SIGKILL, power loss, `os._exit`) leaves the file, and
   `recover_from_restore_file`, called at the next start, restores from it.

Restore file (JSON, one per user: several runs that change settings at once are refused)::

    {"format": 1, "pid": 4242, "timestamp": "2025-01-01T00:00:00+00:00",
     "settings": {"sm_clock_mhz": 1410, "power_limit_w": null},
     "gpus": [{"gpu_index": 0, "uuid": "GPU-...",
               "original": {"locked_sm_clocks_mhz": null}}]}

`original` holds only the settings this run changes; `locked_sm_clocks_mhz: null` means "unlocked"
and is restored with a reset (`nvidia-smi -rgc`), and a power limit is restored by setting it back to the
recorded value, not to the default, so an administrator's own limit survives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol, runtime_checkable

from llm_energy.control.restore_file import (
    _ACTIVE_RESTORE_FILES,
    RESTORE_FILE_FORMAT,
    default_restore_file,
    manual_restore_hint,
    read_restore_file,
    write_restore_file,
)
from llm_energy.errors import ConfigError, GpuSettingsError
from llm_energy.processes import process_alive

logger = logging.getLogger(__name__)

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@runtime_checkable
class SettableGpu(Protocol):
    """A GPU whose SM clock and power limit can be read, set and reset.

    Implemented by `ZeusSettableGpu` (NVML/AMDSMI through Zeus) and `SimulatedGpu`. Setters raise
    `GpuSettingsError` on failure and change nothing then.
    """

    @property
    def index(self) -> int:
        """Device index (the index the GPU factory takes)."""
        ...

    def uuid(self) -> str | None:
        """Return a stable device identifier, None where the vendor library has none."""
        ...

    def has_settings_privilege(self) -> bool:
        """Return whether this process may change the GPU's settings."""
        ...

    def supported_sm_clocks_mhz(self) -> list[int]:
        """Return the SM clocks that can be locked, in MHz."""
        ...

    def power_limit_range_w(self) -> tuple[float, float]:
        """Return the (min, max) settable power limit in watts."""
        ...

    def current_locked_sm_clocks_mhz(self) -> tuple[int, int] | None:
        """Return the locked (min, max) SM clocks in MHz; None when unlocked or not readable."""
        ...

    def current_power_limit_w(self) -> float:
        """Return the current power limit in watts."""
        ...

    def set_locked_sm_clock_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock to [min_mhz, max_mhz]."""
        ...

    def reset_locked_sm_clocks(self) -> None:
        """Unlock the SM clocks."""
        ...

    def set_power_limit_w(self, power_limit_w: float) -> None:
        """Set the power limit in watts."""
        ...

    def reset_power_limit(self) -> None:
        """Return the power limit to the vendor default."""
        ...


@dataclass(frozen=True)
class GpuSettings:
    """Settings for one measurement; None leaves that setting as it is.

    Attributes:
        sm_clock_mhz: Lock the SM clock to exactly this frequency (min = max), in MHz.
        power_limit_w: Set the power limit to this many watts.
    """

    sm_clock_mhz: int | None = None
    power_limit_w: float | None = None

    @property
    def changes_nothing(self) -> bool:
        """True when neither setting is given."""
        return self.sm_clock_mhz is None and self.power_limit_w is None

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict (the store's `gpu_settings`)."""
        return asdict(self)


def _clock_range_text(clocks_mhz: list[int]) -> str:
    if not clocks_mhz:
        return "none"
    steps = {b - a for a, b in zip(clocks_mhz, clocks_mhz[1:], strict=False)}
    step = f" in {steps.pop()} MHz steps" if len(steps) == 1 else f" ({len(clocks_mhz)} values)"
    return f"{clocks_mhz[0]}–{clocks_mhz[-1]} MHz{step}"


def validate_gpu_settings(gpu: SettableGpu, settings: GpuSettings) -> None:
    """Check `settings` against what `gpu` supports, without changing anything.

    Raises:
        ConfigError: the clock is not a supported SM clock, or the power limit is outside the GPU's
            range; the message names the value and the valid range.
    """
    clock_mhz = settings.sm_clock_mhz
    if clock_mhz is not None:
        clocks_mhz = sorted(gpu.supported_sm_clocks_mhz())
        if clock_mhz not in clocks_mhz:
            nearest = sorted(sorted(clocks_mhz, key=lambda c: abs(c - clock_mhz))[:2])
            raise ConfigError(
                f"gpu_clock_mhz={clock_mhz} is not a supported SM clock of gpu:{gpu.index}: "
                f"supported {_clock_range_text(clocks_mhz)} (nearest: {nearest})"
            )
    if settings.power_limit_w is not None:
        low_w, high_w = gpu.power_limit_range_w()
        if not low_w <= settings.power_limit_w <= high_w:
            raise ConfigError(
                f"power_limit_w={settings.power_limit_w:g} is outside gpu:{gpu.index}'s power-limit range "
                f"{low_w:g}–{high_w:g} W"
            )


def _restore_gpu(gpu: SettableGpu, original: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """Put back the settings named in `keys` from `original`; return one line per failure."""
    failures = []
    for key in keys:
        try:
            if key == "locked_sm_clocks_mhz":
                clocks = original[key]
                if clocks is None:
                    gpu.reset_locked_sm_clocks()
                else:
                    gpu.set_locked_sm_clock_mhz(int(clocks[0]), int(clocks[1]))
            elif key == "power_limit_w":
                gpu.set_power_limit_w(float(original[key]))
        except Exception as exc:  # noqa: BLE001 - try every setting, report all failures together
            failures.append(f"gpu:{gpu.index} {key} -> {original[key]!r}: {type(exc).__name__}: {exc}")
    return failures


class _Restorer:
    """Restores the settings applied so far exactly once, from `finally` or a signal handler."""

    def __init__(self, gpus: Sequence[SettableGpu], entries: list[dict[str, Any]], path: Path) -> None:
        self.gpus = gpus
        self.entries = entries
        self.path = path
        self.applied: list[list[str]] = [[] for _ in gpus]
        self.state: Literal["pending", "restoring", "done", "failed"] = "pending"
        self.deferred_signal: int | None = None

    def restore(self) -> None:
        """Restore every applied setting; remove the file on success, raise and keep it otherwise."""
        if self.state != "pending":
            return
        self.state = "restoring"
        failures: list[str] = []
        for gpu, entry, keys in zip(self.gpus, self.entries, self.applied, strict=True):
            failures += _restore_gpu(gpu, entry["original"], keys)
        if failures:
            self.state = "failed"
            message = (
                f"FAILED TO RESTORE GPU SETTINGS: {'; '.join(failures)}. The GPU is left changed. "
                f"The restore file {self.path} is kept; the next start retries it, or restore by hand: "
                f"{manual_restore_hint(self.entries)}"
            )
            logger.error("%s", message)
            raise GpuSettingsError(message)
        self.state = "done"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        logger.info("GPU settings restored; removed %s", self.path)


def _exit_for_signal(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + signum)


def _install_signal_handlers(restorer: _Restorer, previous: dict[int, Any]) -> None:
    """Restore on SIGINT/SIGTERM, then end the block; record the previous handlers in `previous`."""
    if threading.current_thread() is not threading.main_thread():
        logger.warning(
            "GPU settings changed off the main thread: no signal handlers (the restore file covers a kill)"
        )
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if restorer.state == "restoring":
            restorer.deferred_signal = signum  # never interrupt a restore half-way
            return
        restorer.restore()
        prev = previous.get(signum)
        if callable(prev):
            prev(signum, frame)
        # The measurement cannot go on with restored settings, so the block always ends here.
        raise _exit_for_signal(signum)

    for signum in _HANDLED_SIGNALS:
        prev = signal.getsignal(signum)
        if prev is signal.SIG_IGN:
            continue
        previous[signum] = prev
        signal.signal(signum, handler)


def _put_back_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, prev in previous.items():
        signal.signal(signum, prev if prev is not None else signal.SIG_DFL)


def _apply_setting(applied: list[str], key: str, setter: Callable[[], None]) -> None:
    # Marked before the call, so a signal arriving just after the setter returns still restores it;
    # unmarked when the setter raises, because a failed NVML set changes nothing (and restoring a
    # setting the GPU rejected, e.g. unsupported, would fail the same way and alarm for nothing).
    applied.append(key)
    try:
        setter()
    except Exception:
        applied.remove(key)
        raise


def _apply_to_gpu(gpu: SettableGpu, settings: GpuSettings, applied: list[str]) -> None:
    clock_mhz, power_limit_w = settings.sm_clock_mhz, settings.power_limit_w
    if clock_mhz is not None:
        _apply_setting(
            applied, "locked_sm_clocks_mhz", lambda: gpu.set_locked_sm_clock_mhz(clock_mhz, clock_mhz)
        )
    if power_limit_w is not None:
        _apply_setting(applied, "power_limit_w", lambda: gpu.set_power_limit_w(power_limit_w))


@contextlib.contextmanager
def apply_gpu_settings(
    gpu: SettableGpu | Sequence[SettableGpu],
    settings: GpuSettings,
    *,
    allow: bool,
    restore_file: Path | None = None,
) -> Iterator[None]:
    """Apply `settings` to one GPU (or the same settings to several) for the block, then restore.

    Empty settings change nothing and need no permission. Otherwise: refuse without `allow`,
    without privilege or with an unsupported value (before touching anything); write the restore
    file; set; run the block; restore in `finally`, and on SIGINT/SIGTERM from the signal handler
    (which then raises `KeyboardInterrupt` / `SystemExit(128 + signum)`). The block's exception
    passes through. Signal handlers are only installed from the main thread.

    Args:
        gpu: The GPU or GPUs to change.
        settings: What to change.
        allow: The user's explicit consent (`--allow-gpu-settings`).
        restore_file: Where the originals are kept (default: `default_restore_file()`).

    Raises:
        ConfigError: not allowed, no privilege, or a value the GPU does not support (nothing changed).
        GpuSettingsError: a restore file already exists (nothing changed), a set failed (what was set
            is restored first), or the restore failed (the restore file is kept).
    """
    gpus = [gpu] if isinstance(gpu, SettableGpu) else list(gpu)
    if settings.changes_nothing or not gpus:
        yield
        return
    if not allow:
        raise ConfigError(
            f"changing GPU settings ({settings.to_dict()}) needs --allow-gpu-settings; GPUs that are "
            "shared must not be changed, so only pass it on a GPU you may reconfigure"
        )
    for g in gpus:
        if not g.has_settings_privilege():
            raise ConfigError(
                f"no privilege to change the settings of gpu:{g.index} (needs root / CAP_SYS_ADMIN or a "
                "Zeus daemon); nothing changed"
            )
        validate_gpu_settings(g, settings)
    path = restore_file if restore_file is not None else default_restore_file()

    entries: list[dict[str, Any]] = []
    for g in gpus:
        original: dict[str, Any] = {}
        if settings.sm_clock_mhz is not None:
            clocks = g.current_locked_sm_clocks_mhz()
            original["locked_sm_clocks_mhz"] = list(clocks) if clocks is not None else None
        if settings.power_limit_w is not None:
            original["power_limit_w"] = g.current_power_limit_w()
        entries.append({"gpu_index": g.index, "uuid": g.uuid(), "original": original})
    write_restore_file(
        path,
        {
            "format": RESTORE_FILE_FORMAT,
            "pid": os.getpid(),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "settings": settings.to_dict(),
            "gpus": entries,
        },
    )
    _ACTIVE_RESTORE_FILES.add(path)
    restorer = _Restorer(gpus, entries, path)
    previous: dict[int, Any] = {}
    try:
        _install_signal_handlers(restorer, previous)
        for g, applied in zip(gpus, restorer.applied, strict=True):
            _apply_to_gpu(g, settings, applied)
        logger.info("GPU settings %s applied to %s", settings.to_dict(), [g.index for g in gpus])
        yield
    finally:
        try:
            restorer.restore()
        finally:
            _put_back_signal_handlers(previous)
            _ACTIVE_RESTORE_FILES.discard(path)
        if restorer.deferred_signal is not None:
            raise _exit_for_signal(restorer.deferred_signal)


def recover_from_restore_file(
    gpu_factory: Callable[[int], SettableGpu], restore_file: Path | None = None
) -> bool:
    """Restore settings left by a run that died between change and restore; call at every start.

    Args:
        gpu_factory: Returns the settable GPU with a given index (e.g. `ZeusSettableGpu`).
        restore_file: The restore file (default: `default_restore_file()`).

    Returns:
        True if settings were restored (and the file removed); False if there was no file, or it
        belongs to a run that is still going (left alone).

    Raises:
        GpuSettingsError: the file is unreadable, a GPU cannot be opened or is another GPU than the one
            recorded, or a restore failed; the file is kept.
    """
    path = restore_file if restore_file is not None else default_restore_file()
    if not path.exists():
        return False
    content = read_restore_file(path)
    pid = int(content.get("pid", -1))
    if path in _ACTIVE_RESTORE_FILES or (pid != os.getpid() and pid > 0 and process_alive(pid)):
        logger.warning("GPU restore file %s belongs to running pid %d; left alone", path, pid)
        return False
    failures: list[str] = []
    for entry in content["gpus"]:
        try:
            gpu = gpu_factory(int(entry["gpu_index"]))
            uuid = gpu.uuid()
        except Exception as exc:  # noqa: BLE001 - any failure to open the GPU keeps the file
            failures.append(f"gpu:{entry.get('gpu_index')} cannot be opened: {type(exc).__name__}: {exc}")
            continue
        if entry.get("uuid") and uuid and uuid != entry["uuid"]:
            failures.append(
                f"gpu:{entry['gpu_index']} is now {uuid}, not the recorded {entry['uuid']} "
                "(CUDA_VISIBLE_DEVICES changed?)"
            )
            continue
        failures += _restore_gpu(gpu, entry["original"], list(entry["original"]))
    if failures:
        message = (
            f"FAILED TO RESTORE GPU SETTINGS left by run pid {pid} ({content.get('timestamp')}): "
            f"{'; '.join(failures)}. The restore file {path} is kept; restore by hand: "
            f"{manual_restore_hint(content['gpus'])}"
        )
        logger.error("%s", message)
        raise GpuSettingsError(message)
    path.unlink()
    logger.warning(
        "restored GPU settings left by run pid %d (%s): %s",
        pid,
        content.get("timestamp"),
        [e["original"] for e in content["gpus"]],
    )
    return True

"""The restore file: the original GPU settings, written before the first change and read to put them back.

Kept apart from `base.py` (what changes and restores the settings): this is the file's format, its atomic and
exclusive write, its reading, and the by-hand commands printed when a restore fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from llm_energy.errors import GpuSettingsError
from llm_energy.processes import process_alive

RESTORE_FILE_FORMAT = 1
"""Version of the restore file's JSON layout."""

_ACTIVE_RESTORE_FILES: set[Path] = set()
"""Restore files of `apply_gpu_settings` blocks running in this process (never recovered from)."""


def default_restore_file() -> Path:
    """Return `$XDG_STATE_HOME/llm-energy/gpu-restore.json` (`~/.local/state/...` without it)."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "llm-energy" / "gpu-restore.json"


def write_restore_file(path: Path, content: dict[str, Any]) -> None:
    """Write `content` to `path` atomically and exclusively: a file already there is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".gpu-restore-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        # link() publishes the complete file atomically and fails if one exists (unlike replace).
        os.link(tmp_name, path)
    except FileExistsError:
        raise GpuSettingsError(_existing_file_message(path)) from None
    except OSError as exc:
        raise GpuSettingsError(f"cannot write the GPU restore file {path}: {exc}; nothing changed") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _existing_file_message(path: Path) -> str:
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pid = -1
    if pid == os.getpid() and path in _ACTIVE_RESTORE_FILES:
        who = "this process is already changing GPU settings (nested apply_gpu_settings)"
    elif pid != os.getpid() and pid > 0 and process_alive(pid):
        who = f"run pid {pid} is changing GPU settings now"
    else:
        who = "an earlier run did not restore its GPU settings; run the recovery (next start) first"
    return f"GPU restore file {path} exists: {who}. Nothing was changed."


def read_restore_file(path: Path) -> dict[str, Any]:
    """The restore file's content, its layout checked.

    Raises:
        GpuSettingsError: unreadable or an unknown layout; the message says how to restore by hand.
    """
    try:
        content = json.loads(path.read_text())
        if content.get("format") != RESTORE_FILE_FORMAT or not isinstance(content.get("gpus"), list):
            raise ValueError(f"unknown layout (format {content.get('format')!r})")
        for entry in content["gpus"]:
            int(entry["gpu_index"])
            if not isinstance(entry["original"], dict):
                raise ValueError(f"bad entry {entry!r}")
        return dict(content)
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise GpuSettingsError(
            f"GPU restore file {path} is unreadable ({exc}); restore the GPU settings by hand "
            "(nvidia-smi -rgc / nvidia-smi -pl) and delete the file"
        ) from exc


def manual_restore_hint(entries: list[dict[str, Any]]) -> str:
    """The nvidia-smi commands that put the recorded settings back by hand, joined by "; "."""
    hints = []
    for entry in entries:
        # nvidia-smi numbers GPUs without CUDA_VISIBLE_DEVICES; a UUID names the right one either way.
        i, original = entry.get("uuid") or entry["gpu_index"], entry["original"]
        if "locked_sm_clocks_mhz" in original:
            clocks = original["locked_sm_clocks_mhz"]
            hints.append(
                f"nvidia-smi -i {i} -rgc"
                if clocks is None
                else f"nvidia-smi -i {i} -lgc {clocks[0]},{clocks[1]}"
            )
        if "power_limit_w" in original:
            hints.append(f"nvidia-smi -i {i} -pl {original['power_limit_w']:g}")
    return "; ".join(hints)

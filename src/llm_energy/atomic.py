"""Atomic file writes: a reader never sees a half-written export, profile, figure or report.

The one place the temp-file + fsync + `os.replace` dance lives; each caller names the error type its
layer raises (the store raises StoreError, everything else ConfigError).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from llm_energy.errors import ConfigError, LlmEnergyError


def write_atomically(
    path: str | Path, data: bytes, *, error: type[LlmEnergyError] = ConfigError, action: str = "write"
) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and `os.replace`.

    The parent directories are created. An existing file is replaced only once the new content is
    complete and flushed to disk; on failure the temporary file is removed and the target is untouched.

    Returns:
        The path written (user-expanded).

    Raises:
        LlmEnergyError: of type `error` (ConfigError by default) when the file cannot be written (bad
            output path, no permission, disk full); the message says `cannot {action} {path}`.
    """
    target = Path(path).expanduser()
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never reuse someone else's file; 0o666 lets the umask decide, as open() would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise error(f"cannot {action} {target}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise error(f"cannot {action} {target}: {e.strerror or e}") from e
        raise
    return target

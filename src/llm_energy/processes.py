"""Whether a process still runs: shared by the sweep's point claims and the GPU-settings restore file.

Both decide whether a record left by another process is stale (a claim to take over, a restore file to act
on); a zombie counts as gone, since it can neither finish a point nor put a GPU setting back.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Return whether process `pid` runs on this host (one of another user counts; a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"

"""Whether a process still runs, and its state: for point claims, the restore file and the server launcher.

The sweep's point claims and the GPU-settings restore file decide whether a record left by another process
is stale (a claim to take over, a restore file to act on); a zombie counts as gone, since it can neither
finish a point nor put a GPU setting back. The server launcher looks for zombies in a process group.
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
    return process_state(pid) != "Z"  # None (no /proc): trust the signal


def process_state(pid: int) -> str | None:
    """The state letter /proc/<pid>/stat gives (R, S, Z for a zombie...); None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces and ")": the state is the first field after the last.
    return stat.rsplit(")", 1)[-1].split()[0]

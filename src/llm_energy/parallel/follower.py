"""`python -m llm_energy.parallel.follower MODULE:FUNCTION SPEC`: one follower rank of a process group.

Spawned by `TPGroup.start` with the torchrun environment (`RANK`, `WORLD_SIZE`, `MASTER_PORT`,
`LOCAL_RANK`). MODULE:FUNCTION is the engine's follower entry point (for the `hf` engine,
`llm_energy.engines.hf_tp:follower_main`), named by the engine that made the group, so this package
never imports an engine; SPEC is the JSON engine description, passed on as the function's argument.
"""

from __future__ import annotations

import importlib
import sys

if __name__ == "__main__":
    module, _, function = sys.argv[1].partition(":")
    sys.exit(getattr(importlib.import_module(module), function)(sys.argv[2:]))

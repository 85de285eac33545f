"""`python -m llm_energy.parallel.follower SPEC`: one follower rank of a tensor-parallel group.

Spawned by `TPGroup.start` with the torchrun environment (`RANK`, `WORLD_SIZE`, `MASTER_PORT`,
`LOCAL_RANK`); SPEC is the JSON engine description. See `llm_energy.engines.hf_tp.follower_main`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from llm_energy.engines.hf_tp import follower_main

    sys.exit(follower_main())

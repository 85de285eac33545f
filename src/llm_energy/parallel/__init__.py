"""Tensor parallelism for the `hf` engine: shape checks and the process group (no engine imported).

* `checks` — a TP size is checked against the model's heads and the visible GPUs before any weight
  is loaded (pure Python, no torch).
* `group` — the process group: rank 0 is the measuring process, ranks 1..N-1 are follower processes
  it spawns (`python -m llm_energy.parallel.follower ENTRY`, ENTRY the engine's follower function);
  commands go from rank 0 to the followers so every rank runs the same phases in lockstep (see
  `llm_energy.engines.hf_tp`).

Replicas vs one TP group, from measured runs, is `llm_energy.validation.parallel`.

Importing this package does not import torch.
"""

from __future__ import annotations

from llm_energy.parallel.checks import check_tp_shape, check_visible_gpus

__all__ = ["check_tp_shape", "check_visible_gpus"]

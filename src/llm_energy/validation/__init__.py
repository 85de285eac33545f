"""Validation: run a request set on an engine and compare the measurement with every model.

* `offline` — sample a trace's requests, run them with their true lengths on a loaded engine (static
  engines in padded batches, continuous ones all at once) and compare the GPU energy with each
  model's estimate (`run_validation`, `compare`, `ValidationRun` saved as JSON).
* `engine` — open an engine configuration for validation runs (idle power, load, meter) through the
  sweep's worker (`ValidationEngine`, `measure_run`).
* `online` — a stored online serving run beside the offline energy of the same requests.
* `parallel` — data-parallel replicas vs one tensor-parallel group, from stored runs.

Importing this package imports none of them (nor torch): import the module you need.
"""

from __future__ import annotations

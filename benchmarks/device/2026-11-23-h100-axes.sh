#!/usr/bin/env bash
# Device call (H100): the optimisation axes (decoding, speculative, MoE trio), then the Zeus GPU test.
# Run from the repo root on the device after installing the Zeus wheels into PYTHONPATH; writes to $OUT.
set -u
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
timeout 525 python3 benchmarks/axes_gpu.py "$OUT/axes" > "$OUT/axes-stdout.log" 2>&1
echo "axes rc=$?"; tail -n 40 "$OUT/axes-stdout.log"
timeout 45 python3 -m pytest -q -p no:cacheprovider -m gpu tests/meters/test_zeus_gpu.py > "$OUT/pytest-zeus-gpu.log" 2>&1
echo "pytest zeus rc=$?"; tail -n 3 "$OUT/pytest-zeus-gpu.log"

#!/usr/bin/env bash
# Device call (one H200, 2026-12-02; issue 18): the gpu-marked test that prefill + decode ≈ total for the HF engine's
# cudagraphs mode, now at a GPU-bound shape (Llama-3.2-1B layers, bf16, batch 32, input 512 / output 64), with
# per-test durations and the SM clock read (NVML through nvidia-smi, read-only) before and after.
# Output: $OUT/gpu-test-phases.log
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
L="$OUT/gpu-test-phases.log"
{ date -u; nvidia-smi --query-gpu=name,uuid,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv
  timeout "${1:-240}" python3 -m pytest -m gpu -p no:cacheprovider -v -s --durations=0 tests/engines/test_hf_gpu.py \
    -k measures_each_phase
  echo "pytest rc=$?"
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv; date -u; } > "$L" 2>&1
tail -15 "$L"

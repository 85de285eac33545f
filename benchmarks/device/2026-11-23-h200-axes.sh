#!/usr/bin/env bash
# Device call (H100 or H200; ran on the H200): the axes points the H100 axes run's budget skipped (beam 4 at
# batch 8, sample/top-p at 128, the real random speculative pair α ≈ 0 with its plain baselines, OLMo-7B and
# OLMo-1B at 8/64).
set -u
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
timeout 450 python3 benchmarks/axes_gpu.py "$OUT/axes" --budget-s 400 --only greedy:8 greedy:128 beam4:8 sample:128 top-p:128 \
  plain-greedy:1 plain-greedy:8 plain-greedy:32 spec-random:1 spec-random:8 spec-random:32 \
  olmo-1b:8 olmo-1b:64 olmo-7b:8 olmo-7b:64 > "$OUT/axes-stdout.log" 2>&1
echo "axes rc=$? at $SECONDS s"; grep -v Warning "$OUT/axes-stdout.log" | tail -n 30

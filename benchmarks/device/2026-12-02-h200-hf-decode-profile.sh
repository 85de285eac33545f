#!/usr/bin/env bash
# Device call (one H200, 2026-12-02; issue 18 item 4): why hf `cudagraphs` decode cost more energy per token than
# `eager` at batch 64 on the H100 (0.298 vs 0.222 J/token), and whether the fix holds. Llama-3.1-8B shapes, bf16,
# batch 64, input 512 / output 128, one process, one model:
#   eager            dynamic cache, transformers' sdpa (no decode mask: SDPA reads the 8 K/V heads as they are)
#   cudagraphs       static cache + CUDA graphs, attention grouped_sdpa (the fix, the engine's default)
#   cudagraphs-sdpa  the same with `grouped_attention: false`: transformers' sdpa, which copies every layer's
#                    whole static cache 4x per step (repeat_kv) because the static cache's decode mask rules out
#                    SDPA's own grouped-query path (the path before the fix)
# For each: compile s, prefill ms, decode ms/step, GPU W and J/step (total and above idle, NVML energy counter
# through our meter), a torch.profiler table of the top CUDA kernels per decode step (profile-<variant>.txt), the
# SDPA calls of one decode step (K/V shapes, repeat_kv copies), the greedy tokens (agreement with eager); before
# them, each attention path alone at these shapes (time and kernels per layer; no compile needed).
# Output in $OUT/decode-profile/ (7 files): hf_decode_profile.json, .log, run.log, env.txt, profile-*.txt.
#
# Run from the repo root after the Zeus/pydantic wheels are installed:  bash benchmarks/device/2026-12-02-h200-hf-decode-profile.sh
# Expected: ~200 s (import ~10 s, idle 3 s, build ~12 s, attention alone ~3 s, eager ~15 s, cudagraphs ~90 s
# cold inductor cache, cudagraphs-sdpa ~60 s: its prefill graph and most decode kernels hit the cache). No variant
# starts after 170 s; the driver is killed at 225 s and the table printed from what it wrote.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
P="$OUT/decode-profile"
mkdir -p "$P"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > "$P/env.txt" 2>&1
timeout 225 python3 benchmarks/hf_decode_profile.py "$P" --budget-s 195 > "$P/run.log" 2>&1
echo "driver rc=$? at $SECONDS s"
grep -E "^(eager|cudagraphs|compiled)[a-z-]*: (ok|error)|Error|error:" "$P/run.log" | grep -v Warning | tail -n 8
python3 benchmarks/hf_decode_profile.py "$P" --summary-only
for f in "$P"/profile-*.txt; do echo "== $f"; head -n 12 "$f"; done

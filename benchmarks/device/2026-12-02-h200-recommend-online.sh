#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): the recommender against a measured online grid (issue 20).
# Each configuration is its own vLLM API server replaying the same window: Azure conv 2023 at 4x, 30 s
# (trace seconds [0, 120) with arrivals / 4: 456 requests), SLO ttft=2s,tpot=100ms, max_num_batched_tokens
# 16384. The recommendation was made on the CPU before this call (docs/results/recommend-online-h200.md).
# Configurations in order (one starts only if it can end by the deadline): CUDA graphs max_num_seqs 128
# (the choice), 64, eager 256, eager 64. CUDA graphs 256 ran in the simulator call
# (2026-12-02-h200-simulator-online.sh, its azure-conv@4:30 run: the same window). Raw: $OUT/grid-<mode>-<seqs>/.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv; } \
  > "$OUT/env.txt" 2>&1
END=${END_S:-585}
for cfg in "cudagraphs 128 195" "cudagraphs 64 205" "eager 256 125" "eager 64 140"; do
  set -- $cfg
  if (( SECONDS + $3 > END )); then echo "skip $1 $2 (needs ~$3 s, $((END - SECONDS)) s left)"; continue; fi
  D="$OUT/grid-$1-$2"; mkdir -p "$D"
  timeout $((END - SECONDS)) python3 benchmarks/online_gpu.py "$D" --server vllm --vllm-mode "$1" \
    --max-num-seqs "$2" --max-num-batched-tokens 16384 --trace azure-conv --scales 4 --window-s 30 \
    > "$D/run.log" 2>&1
  echo "$1 $2 rc=$? at $SECONDS s: $(grep -h 'scale 4' "$D/run.log" | tail -1)"
done
# the device returns at most 8 files: one archive of every configuration's folder
tar -C "$OUT" -czf "$OUT/grid.tar.gz" $(cd "$OUT" && ls -d grid-*) && rm -rf "$OUT"/grid-*
ls -la "$OUT"

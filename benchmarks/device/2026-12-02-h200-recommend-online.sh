#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): the rest of the recommender's online grid (issue 20), then the logged
# run of every gpu-marked test (issue 18).
# Each configuration is its own vLLM API server replaying the same window: Azure conv 2023 at 4x, 30 s
# (trace seconds [0, 120) with arrivals / 4: 456 requests), SLO ttft=2s,tpot=100ms, max_num_batched_tokens
# 16384, prefix caching off. The recommendation was made on the CPU before these calls
# (docs/results/2026-12-02-h200-recommend-online/recommendation.json). CUDA graphs 256 and 128 ran in the
# call before (2026-12-02-h200-simulator-online.sh). Here, in order, each only if it can end by the deadline:
# eager 256, CUDA graphs 64. Then `pytest -m gpu` on the five gpu test files with the time left (per-test
# durations in the log). Raw: $OUT/grid.tar.gz, $OUT/pytest-gpu.log.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv; } \
  > "$OUT/env.txt" 2>&1
END=${END_S:-585}
for cfg in "eager 256 125" "cudagraphs 64 205"; do
  set -- $cfg
  if (( SECONDS + $3 > END - 60 )); then echo "skip $1 $2 (needs ~$3 s, $((END - SECONDS)) s left)"; continue; fi
  D="$OUT/grid-$1-$2"; mkdir -p "$D"
  timeout $((END - 60 - SECONDS)) python3 benchmarks/online_gpu.py "$D" --server vllm --vllm-mode "$1" \
    --max-num-seqs "$2" --max-num-batched-tokens 16384 --trace azure-conv --scales 4 --window-s 30 \
    > "$D/run.log" 2>&1
  echo "$1 $2 rc=$? at $SECONDS s: $(grep -h 'scale 4' "$D/run.log" | tail -1)"
done
tar -C "$OUT" -czf "$OUT/grid.tar.gz" $(cd "$OUT" && ls -d grid-*) && rm -rf "$OUT"/grid-*
# gpu tests: the meter tests first, alone (they check power under their own load), then the engine tests
left=$((END - SECONDS))
echo "gpu tests with $left s left"
timeout $((left > 10 ? left - 5 : 5)) python3 -m pytest -m gpu -p no:cacheprovider -v --durations=0 \
  tests/meters/test_zeus_gpu.py tests/engines/test_vllm_gpu.py tests/engines/test_hf_gpu.py \
  tests/engines/test_hf_paged_gpu.py tests/engines/test_hf_decoding_gpu.py > "$OUT/pytest-gpu.log" 2>&1
echo "pytest rc=$? at $SECONDS s"; tail -25 "$OUT/pytest-gpu.log"
ls -la "$OUT"

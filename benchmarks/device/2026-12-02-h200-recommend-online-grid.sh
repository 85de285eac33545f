#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): the recommender's online grid with vLLM eager among the candidates
# (issue 20). The recommendation was made on the CPU from the two H200 profiles (CUDA graphs, eager) and
# committed before this call (docs/results/2026-12-02-h200-recommend-online-grid/recommendation.json: choice
# eager 256, runner-up CUDA graphs 128). Each configuration in $CONFIGS ("MODE:MAX_NUM_SEQS ...") is its own vLLM
# API server replaying the same window: Azure conv 2023 at 4x, 30 s (trace seconds [0, 120) with arrivals / 4:
# 456 requests), SLO ttft=2s,tpot=100ms, max_num_batched_tokens 16384, prefix caching off. A configuration
# starts only if it can end by $END_S (eager ~120 s, CUDA graphs ~140 s). Then, if $HF_EAGER=1, HF transformers
# eager offline on the same 456 requests (padded static batches in trace order at its largest feasible batch,
# benchmarks/headline_gpu.py), with the time left. Raw: $OUT/grid-<call>.tar.gz.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
TAG=${TAG:-call}
{ date -u; nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  hostname; } > "$OUT/env-$TAG.txt" 2>&1
END=${END_S:-585}
for cfg in ${CONFIGS:-}; do
  mode=${cfg%%:*}; seqs=${cfg##*:}
  need=$([ "$mode" = eager ] && echo 120 || echo 140)
  if (( SECONDS + need > END )); then echo "skip $mode $seqs (needs ~$need s, $((END - SECONDS)) s left)"; continue; fi
  D="$OUT/grid-$mode-$seqs"; mkdir -p "$D"
  timeout $((END - SECONDS)) python3 benchmarks/online_gpu.py "$D" --server vllm --vllm-mode "$mode" \
    --max-num-seqs "$seqs" --max-num-batched-tokens 16384 --trace azure-conv --scales 4 --window-s 30 \
    > "$D/run.log" 2>&1
  echo "$mode $seqs rc=$? at $SECONDS s: $(grep -h 'scale 4' "$D/run.log" | tail -1)"
done
if [ "${HF_EAGER:-0}" = 1 ] && (( END - SECONDS > 120 )); then
  H="$OUT/grid-hf-eager"; mkdir -p "$H"
  left=$((END - SECONDS))
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout $((left - 5)) python3 benchmarks/headline_gpu.py run \
    --engine hf --mode eager --batch auto --traces .traces/azure-conv-x4-w30.csv --sample 456 \
    --max-input-tokens 1000000 --max-output-tokens 1000000 --deadline-s $((left - 30)) --out-dir "$H" \
    > "$H/headline.log" 2>&1
  echo "hf eager rc=$? at $SECONDS s"; grep -E "J/request|SKIPPED|out of memory|batch" "$H/headline.log" | tail -5
fi
if [ -n "${GPU_TEST:-}" ] && (( END - SECONDS > 60 )); then
  timeout $((END - SECONDS - 5)) python3 -m pytest -m gpu -p no:cacheprovider -v --durations=0 "$GPU_TEST" \
    > "$OUT/pytest-$TAG.log" 2>&1; echo "pytest rc=$? at $SECONDS s"; tail -5 "$OUT/pytest-$TAG.log"
fi
tar -C "$OUT" -czf "$OUT/grid-$TAG.tar.gz" $(cd "$OUT" && ls -d grid-*/) && rm -rf "$OUT"/grid-*/
ls -la "$OUT"

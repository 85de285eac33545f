#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): the simulator's measured side (docs/results/simulate-h200.md, issue 20)
# and the recommender's choice on the same host (docs/results/recommend-online-h200.md).
# Server A, vLLM API server with CUDA graphs, max_num_seqs 256, max_num_batched_tokens 16384 (the bundled H200
# profile's chunk, so the server runs what the simulator is given), prefix caching off, replays in turn:
#   Azure conv 2023 at 2x and 4x (30 s each; trace seconds from 0, arrivals divided by the scale);
#   Mooncake (synthetic, long context) at 0.25x (60 s: one GPU keeps up by the simulator) and 0.75x
#   (40 s: beyond capacity, queues grow).
# Server B, CUDA graphs max_num_seqs 128 (the recommender's choice for the 4x window), replays Azure conv 4x, 30 s.
# SLO ttft=2s,tpot=100ms; each request bounded by 60 s. Raw: $OUT/simulator-online.tar.gz (per server:
# online_gpu.json, serving.db with every request and meter window, online_gpu.log, run.log, the server log).
# The 1x run (60 s) is the first run of an earlier call of this script on the same day (prefix caching on,
# which finds nothing in a server's first run); its folder is kept beside these.
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/wh .whl/*.whl; \
#     export PYTHONPATH=/tmp/wh; source .vbundle/install.sh && bash benchmarks/device/2026-12-02-h200-simulator-online.sh
# Expected: server A ~145 s to start + ~200 s of replays; server B ~145 + ~45 s: ~540 s in all.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
A="$OUT/online"; B="$OUT/grid-cudagraphs-128"
mkdir -p "$A" "$B"
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
M=.traces/mooncake_synthetic_trace.csv
timeout 420 python3 benchmarks/online_gpu.py "$A" --server vllm --vllm-mode cudagraphs --max-num-seqs 256 \
  --max-num-batched-tokens 16384 --max-model-len 60000 --trace azure-conv --scales 2,4 --window-s 30 \
  --extra "$M@0.25:60" --extra "$M@0.75:40" > "$A/run.log" 2>&1
echo "server A rc=$? after $SECONDS s"; grep "scale" "$A/run.log"
if (( SECONDS + 190 <= 585 )); then
  timeout $((585 - SECONDS)) python3 benchmarks/online_gpu.py "$B" --server vllm --vllm-mode cudagraphs \
    --max-num-seqs 128 --max-num-batched-tokens 16384 --trace azure-conv --scales 4 --window-s 30 > "$B/run.log" 2>&1
  echo "server B rc=$? after $SECONDS s"; grep "scale" "$B/run.log"
else
  echo "server B skipped: $((585 - SECONDS)) s left"
fi
# the device returns at most 8 files: one archive
tar -C "$OUT" -czf "$OUT/simulator-online.tar.gz" online grid-cudagraphs-128 env.txt && rm -rf "$A" "$B"
ls -la "$OUT"

#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): the simulator's measured side (docs/results/simulate-h200.md, issue 20).
# One vLLM API server (CUDA graphs, max_num_seqs 256, max_num_batched_tokens 16384 = the bundled H200
# profile's chunk, so the server runs what the simulator is given) replays, one after the other:
#   Azure conv 2023 at 1x (60 s), 2x and 4x (30 s each), trace seconds from 0, arrivals divided by the scale;
#   Mooncake (synthetic, long context) at 0.25x (60 s: a rate one GPU sustains by the simulator) and 0.75x
#   (40 s: beyond capacity, queues grow).
# SLO ttft=2s,tpot=100ms; each request bounded by 60 s. Raw: $OUT/online/ (online_gpu.json, serving.db with
# every request and meter window, run.log, the server log, env.txt).
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/wh .whl/*.whl; \
#     export PYTHONPATH=/tmp/wh; source .vbundle/install.sh && bash benchmarks/device/2026-12-02-h200-simulator-online.sh
# Expected: server ~130-145 s, replays 250 s of arrivals + drains: ~480 s in all.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
O="$OUT/online"
mkdir -p "$O"
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  python3 -m llm_energy env --json; } > "$O/env.txt" 2>&1
M=.traces/mooncake_synthetic_trace.csv
timeout 560 python3 benchmarks/online_gpu.py "$O" --server vllm --vllm-mode cudagraphs --max-num-seqs 256 \
  --max-num-batched-tokens 16384 --max-model-len 60000 --trace azure-conv --scales 1 --window-s 60 \
  --extra azure-conv@2:30 --extra azure-conv@4:30 --extra "$M@0.25:60" --extra "$M@0.75:40" > "$O/run.log" 2>&1
echo "rc=$? after $SECONDS s"
tail -8 "$O/run.log"
# the device returns at most 8 files: the server logs go into one archive
tar -C "$O" -czf "$O/server-logs.tar.gz" server-logs && rm -rf "$O/server-logs"; ls -la "$O"

#!/usr/bin/env bash
# Device call (H100, vLLM bundle installed): vLLM server (CUDA graphs) replaying Azure conv at 1x/2x/4x
# for 60 s each, then the same request sets offline on one vLLM load (same mode and max_num_seqs).
set -u
export PYTHONUNBUFFERED=1
timeout 585 python3 benchmarks/online_gpu.py "$OUT/online" --server vllm --offline --deadline-s 515 > "$OUT/online-stdout.log" 2>&1
echo "online rc=$?"; tail -n 20 "$OUT/online-stdout.log"

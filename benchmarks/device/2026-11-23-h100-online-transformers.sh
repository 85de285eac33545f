#!/usr/bin/env bash
# Device call (H100, vLLM bundle installed for fastapi/uvicorn/openai): `transformers serve`
# (continuous batching, random-init Llama-3.1-8B checkpoint written on the device) replaying Azure conv
# 60-s windows at 1x/2x/4x.
set -u
export PYTHONUNBUFFERED=1
timeout 570 python3 benchmarks/online_gpu.py "$OUT/online" --server transformers > "$OUT/online-stdout.log" 2>&1
echo "online rc=$? at $SECONDS s"; tail -n 25 "$OUT/online-stdout.log"; rm -rf "$OUT/online/checkpoints" 2>/dev/null; du -sh "$OUT"/* | tail

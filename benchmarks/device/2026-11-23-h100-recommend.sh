#!/usr/bin/env bash
# Device call (H100, vLLM bundle installed): recommend + validate on Azure conv, the candidate grid.
set -u
export PYTHONUNBUFFERED=1
python3 -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" > "$OUT/env-vllm.txt" 2>&1
timeout 570 python3 benchmarks/recommend_gpu.py --out-dir "$OUT/rec" --budget-s 520 > "$OUT/recommend-stdout.log" 2>&1
echo "recommend rc=$?"; tail -n 25 "$OUT/recommend-stdout.log"

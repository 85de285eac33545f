#!/usr/bin/env bash
# Device call (H100, vLLM bundle): framework points + validation on Azure conv/code at max_num_seqs 16 and 128.
set -u
export PYTHONUNBUFFERED=1
python3 -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" > "$OUT/env-vllm.txt" 2>&1
timeout 560 python3 benchmarks/validate_gpu.py --engine vllm --mode cudagraphs --traces azure-conv azure-code \
  --batch-sizes 16 128 --sample 500 --points 1:512:64 8:512:64 64:512:64 128:512:64 \
  --out-dir "$OUT/validate" --db "$OUT/framework-vllm.db" > "$OUT/validate-vllm.log" 2>&1
echo "rc=$?"; grep -E "requests|written|point b|loaded|Error|error" "$OUT/validate-vllm.log" | tail -14

#!/usr/bin/env bash
# Device call (H100, host B): HF eager validation of Azure code at batch 64, then input-2048 calibration.
set -u
export PYTHONUNBUFFERED=1
timeout 115 python3 benchmarks/validate_gpu.py --engine hf --mode eager --sample 500 --max-input-tokens 2048 \
  --max-output-tokens 128 --out-dir "$OUT/validate" --traces azure-code --batch-sizes 64 > "$OUT/validate-hf-code64.log" 2>&1
echo "validate code64 rc=$?"; grep -hE "requests" "$OUT"/validate-hf-*.log
timeout 170 python3 -m llm_energy sweep benchmarks/specs/h100-calibration-hf-eager-2048.yaml --db "$OUT/calib.db" > "$OUT/calib-2048.log" 2>&1
echo "calib rc=$?"
python3 -m llm_energy export --db "$OUT/calib.db" "$OUT/runs.csv" > /dev/null 2>&1

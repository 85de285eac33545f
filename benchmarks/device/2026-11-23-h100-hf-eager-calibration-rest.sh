#!/usr/bin/env bash
# Device call (H100): the rest of the HF eager calibration (resumes .devstate/calib.db) and validation.
set -u
export PYTHONUNBUFFERED=1
cp .devstate/calib.db "$OUT/calib.db"
timeout 170 python3 -m llm_energy sweep benchmarks/specs/h100-calibration-hf-eager.yaml --db "$OUT/calib.db" > "$OUT/calib-hf-eager-2.log" 2>&1
echo "calib rc=$?"
V="--engine hf --mode eager --sample 500 --max-input-tokens 2048 --max-output-tokens 128 --out-dir $OUT/validate"
timeout 170 python3 benchmarks/validate_gpu.py $V --traces azure-code --batch-sizes 16 64 > "$OUT/validate-hf-code.log" 2>&1
echo "validate code rc=$?"
timeout 110 python3 benchmarks/validate_gpu.py $V --traces azure-conv --batch-sizes 64 > "$OUT/validate-hf-conv64.log" 2>&1
echo "validate conv64 rc=$?"; grep -hE "requests" "$OUT"/validate-hf-*.log
python3 -m llm_energy export --db "$OUT/calib.db" "$OUT/runs.csv" > /dev/null 2>&1

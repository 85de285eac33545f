#!/usr/bin/env bash
# Device call (H100): HF eager calibration + validation on Azure conv/code + framework points.
# Run from the repo root on the device after installing the Zeus wheels into PYTHONPATH; writes to $OUT.
set -u
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
timeout 200 python3 -m llm_energy sweep benchmarks/specs/h100-calibration-hf-eager.yaml --db "$OUT/calib.db" > "$OUT/calib-hf-eager.log" 2>&1
echo "calib rc=$?"; tail -2 "$OUT/calib-hf-eager.log"
timeout 270 python3 benchmarks/validate_gpu.py --engine hf --mode eager --traces azure-conv azure-code \
  --batch-sizes 16 64 --sample 500 --max-input-tokens 2048 --max-output-tokens 128 --out-dir "$OUT/validate" > "$OUT/validate-hf-eager.log" 2>&1
echo "validate rc=$?"; grep -E "requests|written|Error" "$OUT/validate-hf-eager.log" | tail -8
timeout 80 python3 -m llm_energy sweep benchmarks/specs/h100-framework-hf.yaml --db "$OUT/calib.db" > "$OUT/framework-hf.log" 2>&1
echo "framework rc=$?"; tail -2 "$OUT/framework-hf.log"
python3 -m llm_energy export --db "$OUT/calib.db" "$OUT/runs.csv" > /dev/null 2>&1; ls -la "$OUT"

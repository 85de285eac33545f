#!/usr/bin/env bash
# Device call (H100, vLLM bundle installed): vLLM CUDA graphs at input 4096/8192 and output 128/512.
set -u
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
timeout 560 python3 -m llm_energy sweep benchmarks/specs/h100-calibration-vllm-long.yaml --db "$OUT/calib.db" > "$OUT/calib-vllm-long.log" 2>&1
echo "calib rc=$? at $SECONDS s"
python3 -m llm_energy export --db "$OUT/calib.db" "$OUT/runs.csv" > /dev/null 2>&1
python3 - "$OUT/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
d["j_per_out_token"] = d["total_energy_j"] / (d["batch_size"] * d["output_len"])
print(d[["batch_size", "input_len", "output_len", "status", "compile_s", "j_per_out_token", "total_duration_s"]].to_string())
PY

#!/usr/bin/env bash
# Device call (H200, vLLM bundle installed): the framework figure on the H200 (HF eager, vLLM with and
# without CUDA graphs; input 512 / output 64, batch 1/8/64/128).
set -u
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
timeout 540 python3 -m llm_energy sweep benchmarks/specs/h200-framework.yaml --db "$OUT/framework.db" > "$OUT/framework-h200.log" 2>&1
echo "sweep rc=$? at $SECONDS s"
python3 -m llm_energy export --db "$OUT/framework.db" "$OUT/runs.csv" > /dev/null 2>&1
python3 - "$OUT/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
d["j_per_request"] = d["total_energy_j"] / d["batch_size"]
print(d[["engine", "mode", "batch_size", "status", "load_s", "compile_s", "j_per_request", "total_duration_s"]].to_string())
PY

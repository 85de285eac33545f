#!/usr/bin/env bash
# Device call (H100): the framework figure for every HF mode on one host (1,024 requests x 64 output
# tokens, input 512): eager, hf-paged, cudagraphs, compiled, each under its own time limit into one database;
# then the HF GPU tests (tiny model: token agreement across modes, hf-paged on CUDA).
set -u
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
run() {  # mode, time limit (s)
  timeout "$2" python3 -m llm_energy sweep "benchmarks/specs/h100-framework-hf-$1.yaml" --db "$OUT/framework.db" > "$OUT/framework-$1.log" 2>&1
  echo "$1 rc=$? at $SECONDS s"; python3 -m llm_energy export --db "$OUT/framework.db" "$OUT/runs.csv" > /dev/null 2>&1
}
run eager 110
run paged 90
run cudagraphs 230
run compiled $((545 - SECONDS))
timeout 40 python3 -m pytest -q -p no:cacheprovider -m gpu tests/engines/test_hf_paged_gpu.py tests/engines/test_hf_gpu.py > "$OUT/pytest-hf-gpu.log" 2>&1
echo "pytest hf rc=$?"; tail -n 3 "$OUT/pytest-hf-gpu.log"
python3 - "$OUT/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
d["j_per_request"] = d["total_energy_j"] / d["batch_size"]
print(d[["engine", "mode", "batch_size", "status", "compile_s", "j_per_request", "total_duration_s"]].to_string())
PY

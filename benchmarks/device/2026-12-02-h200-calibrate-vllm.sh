#!/usr/bin/env bash
# Device call (H200): `llm-energy calibrate` of vLLM with CUDA graphs (Llama-3.1-8B shapes, random weights) within a
# 6.5 GPU-minute budget (engine load included), inputs up to the model's full 128k context; the profile it fits and
# the runs it measured come back under $OUT. Prelude (the command line of the call): Zeus wheel + vLLM bundle.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
{ nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
timeout 480 python3 -m llm_energy calibrate --engine vllm --mode cudagraphs --gpu-minutes 6.5 \
  --db "$OUT/calib.db" -o "$OUT/h200-llama-3.1-8b-vllm-cudagraphs.json" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? at $SECONDS s"
python3 -m llm_energy export --db "$OUT/calib.db" "$OUT/runs.csv" > /dev/null 2>&1
tail -5 "$OUT/calibrate.log"
python3 - "$OUT/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
print(d[["batch_size", "input_len", "output_len", "status", "prefill_duration_s", "total_duration_s", "total_energy_j"]].to_string())
PY

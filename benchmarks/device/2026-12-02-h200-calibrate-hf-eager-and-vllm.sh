#!/usr/bin/env bash
# Device call (one H200, 2026-12-02; issue 18): both engines of the seed's headline calibrated on ONE host, in one
# call, over the lengths the seed kept (prompts up to 8k): `llm-energy calibrate` of HF transformers eager (the
# PyTorch baseline) within a 4.0 GPU-minute budget, then of vLLM with CUDA graphs within 3.5 GPU-minutes (engine
# loads included), both `--max-input 8192`. The seed's binned trace-level estimate is then made from these two
# profiles on a CPU (`llm-energy estimate --method binned`, headline.md). If a time limit stops a calibration, its
# profile is fitted from the runs already stored (`llm-energy fit`).
# Prelude (the command line of the call): Zeus wheel + vLLM bundle (see 2026-12-02-h200-calibrate-vllm.sh).
# Output: $OUT/calib.tar.gz (both profiles, calib.db, runs.csv, logs, env.txt).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
C="$OUT/calib"; mkdir -p "$C"
{ date -u; nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  hostname; python3 -m llm_energy env --json; } > "$C/env.txt" 2>&1
calibrate() {  # engine mode minutes timeout_s
  local p="$C/h200-llama-3.1-8b-$1-$2.json"
  timeout "$4" python3 -m llm_energy calibrate --engine "$1" --mode "$2" --gpu-minutes "$3" --max-input 8192 \
    --db "$C/calib.db" -o "$p" > "$C/calibrate-$1-$2.log" 2>&1
  echo "calibrate $1 $2 rc=$? at $SECONDS s"
  if [ ! -s "$p" ]; then
    python3 -m llm_energy fit --db "$C/calib.db" --engine "$1" --mode "$2" -o "$p" >> "$C/calibrate-$1-$2.log" 2>&1
    echo "fit $1 $2 from the stored runs rc=$?"
  fi
  grep -E "calibrating|wrote|leave-one-out" "$C/calibrate-$1-$2.log" | tail -4
}
calibrate hf eager 4.0 285
calibrate vllm cudagraphs 3.5 $((565 - SECONDS))
python3 -m llm_energy export --db "$C/calib.db" "$C/runs.csv" > /dev/null 2>&1
python3 - "$C/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
print(d[["engine", "batch_size", "input_len", "output_len", "status", "prefill_duration_s", "total_duration_s", "total_energy_j"]].to_string())
PY
tar -czf "$OUT/calib.tar.gz" -C "$OUT" calib && rm -rf "$C"
echo "done at $SECONDS s"

#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): `llm-energy calibrate` of vLLM eager (--enforce-eager; Llama-3.1-8B shapes,
# random weights) within a 6.0 GPU-minute budget (engine load included), so that `recommend --scorer simulate`
# can score eager beside CUDA graphs (issue 20). If the time limit stops it, the profile is fitted from the runs
# already stored (`llm-energy fit`). Then, with the time left, benchmarks/hf_phase_gap.py: where a whole HF
# generation of the tiny model spends time that neither phase does, per mode (issue 18: the failing
# test_run_point_on_gpu_measures_each_phase).
# Prelude (the command line of the call): Zeus wheel + vLLM bundle (see 2026-12-02-h200-calibrate-vllm.sh).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
{ date -u; nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  hostname; python3 -m llm_energy env --json; } > "$OUT/env.txt" 2>&1
P="$OUT/h200-llama-3.1-8b-vllm-eager.json"
timeout 470 python3 -m llm_energy calibrate --engine vllm --mode eager --gpu-minutes 6.0 \
  --db "$OUT/calib.db" -o "$P" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? at $SECONDS s"
if [ ! -s "$P" ]; then
  python3 -m llm_energy fit --db "$OUT/calib.db" --engine vllm --mode eager -o "$P" >> "$OUT/calibrate.log" 2>&1
  echo "fit from the stored runs rc=$?"
fi
python3 -m llm_energy export --db "$OUT/calib.db" "$OUT/runs.csv" > /dev/null 2>&1
grep -E "calibrating|wrote|leave-one-out" "$OUT/calibrate.log" | tail -4
python3 - "$OUT/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
print(d[["batch_size", "input_len", "output_len", "status", "prefill_duration_s", "total_duration_s", "total_energy_j"]].to_string())
PY
gzip -f "$OUT/calib.db"
left=$((590 - SECONDS))
echo "phase-gap diagnostic with $left s left"
(( left > 40 )) && timeout $((left - 5)) python3 benchmarks/hf_phase_gap.py --json "$OUT/phase-gap.json" \
  > "$OUT/phase-gap.log" 2>&1; echo "phase gap rc=$? at $SECONDS s"
grep -v "^\[\|USDT\|Warning\|warn" "$OUT/phase-gap.log" | tail -25
ls -la "$OUT"

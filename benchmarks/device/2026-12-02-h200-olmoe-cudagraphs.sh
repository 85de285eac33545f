#!/usr/bin/env bash
# Device call (one H200, 2026-12-02; issue 18, item 4): OLMoE-1B-7B with HF eager and with CUDA graphs, batch 1 then
# 64, input 512 / output 128, one run (benchmarks/specs/h200-olmoe-cudagraphs.yaml). Short of device time: the sweep
# starts no point after END_S - 60 s. Prelude: as 2026-12-02-h200-framework-all-modes.sh (pydantic comes from the
# vLLM bundle). Output: $OUT/olmoe.tar.gz (env.txt, log, runs.csv).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
END=${1:-110}; R="$OUT/olmoe"; mkdir -p "$R"
{ date -u; nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  python3 -m llm_energy env --json; } > "$R/env.txt" 2>&1
timeout $((END - SECONDS)) python3 -m llm_energy sweep benchmarks/specs/h200-olmoe-cudagraphs.yaml --db "$R/olmoe.db" \
  --max-minutes "$(python3 -c "print(round(max($END - $SECONDS - 60, 6) / 60, 2))")" > "$R/olmoe.log" 2>&1
echo "sweep rc=$? at $SECONDS s"; tail -3 "$R/olmoe.log"
python3 -m llm_energy export --db "$R/olmoe.db" "$R/runs.csv" > /dev/null 2>&1
python3 - "$R/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
d["ms_step"] = d["decode_duration_s"] / (d["output_len"] - 1) * 1e3
print(d[["mode", "batch_size", "status", "compile_s", "decode_mean_power_w", "ms_step", "total_energy_per_token_j"]].to_string())
PY
tar -czf "$OUT/olmoe.tar.gz" -C "$OUT" olmoe && rm -rf "$R"

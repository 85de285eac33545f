#!/usr/bin/env bash
# Device call(s) (one H200, 2026-12-02; issue 18): the seed's framework figure for EVERY engine mode —
# HF eager, HF paged, vLLM eager and vLLM with CUDA graphs (benchmarks/specs/h200-framework-all-modes-a.yaml),
# then HF cudagraphs and compiled (…-b.yaml; 48-75 s of torch.compile per batch size as run) — input 512 / output 64,
# batch 1/8/64/128, into one database. It needs more than one 10-minute call: the database is kept in
# fwstate/framework.db, which the next call carries back (`carry: ["fwstate"]`), and `sweep --max-minutes`
# starts no point that could not finish before the call's end, so a rerun resumes where the last call stopped.
# Calls that land on another machine are another host: the run of 2026-12-02 did (framework-h200.md).
# Usage: [PARTS="a b"] bash benchmarks/device/2026-12-02-h200-framework-all-modes.sh END_S  (seconds it may use)
# Part c (…-c.yaml, HF eager alone) measures HF eager again on the host that ran the last compiled points.
# Prelude (the command line of the call): Zeus wheel + vLLM bundle (see 2026-12-02-h200-calibrate-vllm.sh).
# Output: $OUT/framework.db (to carry on) and $OUT/fw-HHMM.tar.gz (this call's logs, env.txt, runs.csv so far).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
END=${1:-560}
STATE=fwstate; DB="$STATE/framework.db"; mkdir -p "$STATE"
TAG=$(date -u +%H%M); R="$OUT/fw-$TAG"; mkdir -p "$R"
{ date -u; nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  hostname; python3 -m llm_energy env --json; } > "$R/env.txt" 2>&1
sweep() {  # spec-suffix margin_s [db]: the last point may start margin_s before END (a load + one compile fit in it)
  local left=$((END - SECONDS - $2))
  if [ "$left" -lt 20 ]; then echo "sweep $1 not started: $left s left"; return; fi
  timeout $((END - SECONDS)) python3 -m llm_energy sweep "benchmarks/specs/h200-framework-all-modes-$1.yaml" \
    --db "${3:-$DB}" --max-minutes "$(python3 -c "print(round($left / 60, 2))")" > "$R/framework-$1.log" 2>&1
  echo "sweep $1 rc=$? at $SECONDS s"; tail -2 "$R/framework-$1.log"
}
# PARTS="b" skips part a (a later call on another host would measure a's points again, under its own env id).
for part in ${PARTS:-a b}; do
  case $part in a) sweep a 60 ;; b) sweep b 100 ;; c) sweep c 30 "$STATE/anchor.db" ;; esac
done
python3 -m llm_energy export --db "$DB" "$R/runs.csv" > /dev/null 2>&1
python3 - "$R/runs.csv" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
d["j_per_request"] = d["total_energy_j"] / d["batch_size"]
cols = ["engine", "mode", "batch_size", "status", "load_s", "compile_s", "j_per_request", "total_duration_s", "created_at"]
print(d[cols].to_string())
PY
cp "$DB" "$OUT/framework.db"; [ -f "$STATE/anchor.db" ] && cp "$STATE/anchor.db" "$OUT/anchor.db"
[ -f "$STATE/anchor.db" ] && python3 -m llm_energy export --db "$STATE/anchor.db" "$R/anchor-runs.csv" > /dev/null 2>&1
tar -czf "$OUT/fw-$TAG.tar.gz" -C "$OUT" "fw-$TAG" && rm -rf "$R"
echo "done at $SECONDS s"

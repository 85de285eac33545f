#!/usr/bin/env bash
# Device call (one H200, 2026-12-02): the seed study's headline, like for like (docs/results/headline.md).
# The same seeded samples of Azure conv and Azure code 2023 (150 requests each, input <= 8192, output <= 512,
# seed 0) run through vLLM with CUDA graphs (continuous batching, max_num_seqs 256 >= the sample: every request
# at once) and through HF transformers eager (padded static batches in trace order, each trace at the largest
# batch whose padded batches fit 85% of the memory free after loading), then one table: J/request per engine
# and the saving per trace beside the seed's 72.18% / 37.58%. Raw ValidationRun JSONs and the table land in
# $OUT/headline/ (8 files at most: what the device tool returns).
#
# Run from the repo root with the wheels (.whl) and the vLLM bundle (.vbundle) carried:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && source .vbundle/install.sh && bash benchmarks/device/2026-12-02-h200-headline.sh
# Expected: ~150 s vLLM (import + load with graphs ~110-130 s, two runs ~25 s), 300-360 s HF eager (load ~25 s,
# modelled 273-330 s for both traces with their warm-up batches: `headline_gpu.py plan`); 455-515 s in all.
# The HF run skips a trace whose modelled time no longer fits (--deadline-s) rather than being killed in it.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
H="$OUT/headline"
mkdir -p "$H"
{ nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv
  python3 -m llm_energy env --json; } > "$H/env.txt" 2>&1
S=(--sample 150 --seed 0 --max-input-tokens 8192 --max-output-tokens 512)
timeout 230 python3 benchmarks/headline_gpu.py run --engine vllm --mode cudagraphs --batch 256 "${S[@]}" \
  --out-dir "$H" >> "$H/headline.log" 2>&1
echo "vllm rc=$? at $SECONDS s"
left=$((505 - SECONDS))
# HF in its own process (the GPU is free again); expandable segments keep the allocator from fragmenting
# between padded batches of different shapes near the memory limit.
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout $((left + 25)) python3 benchmarks/headline_gpu.py run \
  --engine hf --mode eager --batch auto "${S[@]}" --deadline-s "$((left - 5))" --out-dir "$H" >> "$H/headline.log" 2>&1
echo "hf rc=$? at $SECONDS s"
python3 benchmarks/headline_gpu.py summary "$H" >> "$H/headline.log" 2>&1
echo "summary rc=$?"
grep -E "headline_gpu (.*loaded|.*batch|.*J/request|.*SKIPPED|.*out of memory|.*written|memory)" "$H/headline.log" | tail -n 20
cat "$H/summary.md" 2>/dev/null
ls -la "$H"

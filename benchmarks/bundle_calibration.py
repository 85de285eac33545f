"""Bundle calibration runs into the package: a compact CSV of per-run results plus a JSON sidecar.

Merges the `llm-energy export` CSVs of one configuration measured in several device calls (the lent
GPU may be a different host each call), checks that they come from one environment as far as the
engine is concerned (same GPU model, driver, power limit, Python, and the engine's package versions;
see `EngineDescriptor.packages`), and writes `src/llm_energy/data/calibration/<stem>.csv` + `.json`
in the format `llm_energy.report.sample.bundled_calibration_frame` reads.

    python benchmarks/bundle_calibration.py --engine hf --mode eager --stem h100-llama-3.1-8b-hf-eager \
        --description "..." --spec benchmarks/specs/h100-calibration-hf-eager.yaml runs1.csv runs2.csv

`--append` adds the runs to the bundled data set of that stem instead (a later run resuming the grid):
the new runs must come from the environment recorded in its JSON, run ids already bundled are skipped, and
the JSON keeps its description and gains the new spec and dates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from llm_energy.engines import engine_descriptor
from llm_energy.env import env_fingerprint

COLUMNS = [
    "run_id", "status", "model", "engine", "mode", "batch_size", "input_len", "output_len", "compile_s",
    *(f"{phase}_{col}" for phase in ("prefill", "decode", "total") for col in (
        "duration_s", "energy_j", "uncertainty_j", "tokens", "repetitions", "mean_power_w")),
    "created_at", "device_call", "idle_power_w", "max_num_seqs", "engine_facts",
]  # fmt: skip
ENV_SCALARS = ("host", "platform", "python", "cpu_model", "cpu_count", "gpu_count", "gpu_name", "driver",
               "power_limit_w", "sm_clock_mhz", "mem_clock_mhz", "cuda_visible_devices")  # fmt: skip
ENV_JSON = ("gpus", "cpu_meters", "versions", "notes")


def env_of(row: pd.Series) -> dict[str, object]:
    """The environment record of one exported run (JSON columns decoded)."""
    env: dict[str, object] = {k: row.get(f"env_{k}") for k in ENV_SCALARS}
    for key in ENV_JSON:
        value = row.get(f"env_{key}")
        env[key] = json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
    for key, value in list(env.items()):
        if isinstance(value, float) and pd.isna(value):
            env[key] = None
    return env


def main(argv: list[str] | None = None) -> int:
    """Merge, check, write; return 2 when the runs come from different environments."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("csvs", nargs="+", type=Path)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--stem", required=True)
    ap.add_argument("--description", required=True)
    ap.add_argument("--spec", nargs="*", type=Path, default=[])
    ap.add_argument("--out-dir", type=Path, default=Path("src/llm_energy/data/calibration"))
    ap.add_argument("--append", action="store_true", help="add to the bundled data set of --stem")
    args = ap.parse_args(argv)

    # Which device call (the export's folder) each run came from: lent GPUs differ between calls.
    frame = pd.concat(
        [pd.read_csv(p).assign(device_call=p.parent.name) for p in args.csvs], ignore_index=True
    )
    frame = frame[(frame["engine"] == args.engine) & (frame["mode"] == args.mode)]
    frame = frame.drop_duplicates("run_id").sort_values(["created_at"]).reset_index(drop=True)
    envs = [env_of(row) for _, row in frame.iterrows()]
    packages = engine_descriptor(args.engine).packages
    ids = {env_fingerprint(env, packages) for env in envs}
    if len(ids) != 1:
        print(f"runs come from {len(ids)} environments for {args.engine}: {sorted(ids)}", file=sys.stderr)
        return 2
    env = envs[-1]
    env["env_id"] = ids.pop()
    if args.append:
        return append(frame, env, args)
    hosts = sorted({str(r) for r in frame["env_env_id"]})
    meta = {
        "description": args.description,
        "spec": "\n".join(p.read_text(encoding="utf-8") for p in args.spec),
        "measured": ", ".join(sorted({str(t)[:10] for t in frame["created_at"]})),
        "energy_columns": "GPU joules per batch for one repetition of the phase",
        "device_calls": f"{len(args.csvs)} exports; stored env ids {hosts} (recomputed for the engine: one)",
        "env": env,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frame[[c for c in COLUMNS if c in frame.columns]].to_csv(args.out_dir / f"{args.stem}.csv", index=False)
    (args.out_dir / f"{args.stem}.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"{len(frame)} runs ({frame['status'].eq('ok').sum()} ok) -> {args.out_dir / args.stem}.csv/.json")
    return 0


def append(frame: pd.DataFrame, env: dict[str, object], args: argparse.Namespace) -> int:
    """Add `frame` to the bundled stem when it shares the bundled environment; return 2 when it does not."""
    csv, side = args.out_dir / f"{args.stem}.csv", args.out_dir / f"{args.stem}.json"
    old, meta = pd.read_csv(csv), json.loads(side.read_text(encoding="utf-8"))
    old_env = meta["env"] if isinstance(meta["env"], dict) else None
    if old_env is None or env_fingerprint(old_env, engine_descriptor(args.engine).packages) != env["env_id"]:
        print(f"the runs' environment differs from the one bundled in {side}: not appended", file=sys.stderr)
        return 2
    new = frame[~frame["run_id"].isin(old["run_id"])]
    merged = pd.concat([old, new[[c for c in COLUMNS if c in new.columns]]], ignore_index=True)
    counts = [c for c in merged.columns if c.endswith(("_tokens", "_repetitions"))]
    merged[counts] = merged[counts].astype("Int64")  # oom rows have none: keep the others integers
    meta["spec"] = "\n".join([meta.get("spec", ""), *(p.read_text(encoding="utf-8") for p in args.spec)])
    dates = {d.strip() for d in str(meta.get("measured", "")).split(",") if d.strip()}
    meta["measured"] = ", ".join(sorted(dates | {str(t)[:10] for t in new["created_at"]}))
    meta["appended"] = [*meta.get("appended", []), f"{len(new)} runs from {sorted(set(new['device_call']))}"]
    merged.to_csv(csv, index=False, float_format="%.6g")
    side.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"{len(new)} runs appended ({len(merged)} in all) -> {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

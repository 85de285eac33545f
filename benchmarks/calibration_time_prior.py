"""How well `calibrate`'s planner predicted each point's time, per prior, against a recorded calibration (CPU).

A point's measured time is the gap between its stored run and the one before it in the same device call
(`created_at`, one-second resolution; the first point of a call also holds the engine's load, so it is left
out). The prediction is the planner's own (`sweep.calibrate.point_seconds`) from each prior, rescaled to the
recorded GPU as the planner does (`modeling.transfer`).

    python benchmarks/calibration_time_prior.py RUNS.csv --engine hf --prior h100-llama-3.1-8b-hf-eager \
        --prior h200-llama-3.1-8b-vllm
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.architectures import load_architecture
from llm_energy.meters.gpus import gpu_spec
from llm_energy.modeling.fitting import kv_capacity_from_memory
from llm_energy.modeling.physical import ShapeConstants
from llm_energy.modeling.profile import load_profile
from llm_energy.modeling.transfer import transfer
from llm_energy.sweep.calibrate import point_seconds

MAX_GAP_S = 120.0
"""A longer gap between two runs is another device call, not one point."""


def measured_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run with the seconds since the previous run of the same call (NaN for a call's first)."""
    d = runs.sort_values("created_at").reset_index(drop=True)
    ts = pd.to_datetime(d["created_at"], utc=True)
    t = (ts - ts.iloc[0]).dt.total_seconds().to_numpy()
    gap = np.diff(t, prepend=np.nan)
    d["measured_s"] = np.where(gap <= MAX_GAP_S, gap, np.nan)
    return d


def predicted_s(d: pd.DataFrame, prior_name: str, engine: str, gpu_name: str, model: str) -> np.ndarray:
    base = load_profile(prior_name)
    assert base.physical is not None
    gpu = gpu_spec(gpu_name)
    shape = ShapeConstants.of(load_architecture(model))
    kv = kv_capacity_from_memory(shape, gpu.memory_bytes) if gpu.memory_bytes else 1e6
    prior = transfer(base.physical, gpu_spec(base.gpu_name), gpu, kv_capacity_tokens=kv)
    return np.array(
        [
            point_seconds(
                prior, int(r.batch_size), int(r.input_len), int(r.output_len), 1.0, engine, str(r.mode)
            )
            for r in d.itertuples()
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", help="an `llm-energy export` CSV of the calibration")
    p.add_argument("--engine", required=True)
    p.add_argument("--prior", action="append", required=True, help="bundled profile name (repeatable)")
    args = p.parse_args(argv)
    runs = pd.read_csv(args.runs)
    runs = runs[(runs["engine"] == args.engine) & (runs["status"] == "ok")]
    d = measured_points(runs)
    known = d["measured_s"].notna().to_numpy()
    gpu, model = str(d["env_gpu_name"].iloc[0]), str(d["model"].iloc[0])
    total = float(d.loc[known, "measured_s"].sum())
    out: dict[str, Any] = {"points": int(known.sum()), "measured_s": total, "priors": {}}
    print(f"{args.engine} on {gpu}: {known.sum()} points with a measured time, {total:.0f} s in all")
    for name in args.prior:
        pred = predicted_s(d, name, args.engine, gpu, model)[known]
        ratio = pred / d.loc[known, "measured_s"].to_numpy()
        out["priors"][name] = {
            "predicted_s": float(pred.sum()),
            "total_ratio": float(pred.sum() / total),
            "point_ratio_median": float(np.median(ratio)),
            "point_ratio_min": float(ratio.min()),
            "point_ratio_max": float(ratio.max()),
        }
        print(
            f"  prior {name}: predicted {pred.sum():.0f} s = {pred.sum() / total:.2f}x measured; per point "
            f"median {np.median(ratio):.2f}x (min {ratio.min():.2f}, max {ratio.max():.2f})"
        )
    return out


if __name__ == "__main__":
    main()

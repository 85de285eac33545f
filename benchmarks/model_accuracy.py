"""The energy models' accuracy: leave-one-out over every calibration point, measured validation runs, the
calibration budget, and the H100 → H200 transfer. Prints markdown tables (docs/results/model-accuracy-h200.md)
and writes the numbers as JSON; no GPU needed, every input is a raw file in the repository.

    python benchmarks/model_accuracy.py [--json OUT.json]

* LOO: each calibration point is left out, every model is refitted on the rest (the grid is rebuilt; a point
  on the grid's edge is then extrapolated by it), and predicts the point's prefill + decode energy.
* Validation: the H200 vLLM runs of docs/results/2026-12-02-h200-vllm-validation (200 sampled requests of Azure
  conv, Azure code and Mooncake at max_num_seqs 32 and 256) against each model of the H200 profile made by
  `llm-energy calibrate` in 6.5 GPU-minutes, the H100 profile as it is, and the H100 profile rescaled to the
  H200 by published peaks (`--target-gpu`).
* Budget: the calibration's points in the order they ran, cut where the device had spent 3, 4, 5 and 6.5
  minutes (engine load included, from the runs' timestamps), each prefix fitted and validated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.meters.gpus import gpu_spec
from llm_energy.modeling.calibration import CalibrationGrid
from llm_energy.modeling.fitting import leave_one_out, usable
from llm_energy.modeling.parametric import ParametricModel
from llm_energy.modeling.profile import EnergyProfile, fit_profile, load_profile
from llm_energy.modeling.transfer import transfer
from llm_energy.validation.models import compare
from llm_energy.validation.offline import ValidationRun

ROOT = Path(__file__).resolve().parents[1]
CALIB = ROOT / "docs/results/2026-12-02-h200-vllm-calibrate/runs.csv"
VALID = ROOT / "docs/results/2026-12-02-h200-vllm-validation"
PROFILES = ("h200-llama-3.1-8b-vllm", "h100-llama-3.1-8b-vllm", "h100-llama-3.1-8b-hf-eager")


def _total(t: pd.DataFrame) -> np.ndarray:
    return (t["prefill_j"] + t["decode_j"]).to_numpy(float)


def loo_grid_and_parametric(table: pd.DataFrame, profile: EnergyProfile) -> dict[str, np.ndarray]:
    """Relative LOO errors of the grid (binned at the point's exact lengths: holes filled from the nearest
    measured batch, and from the physical model refitted on the rest) and of the parametric fit."""
    from llm_energy.modeling.fitting import fit_physical

    phys = profile.physical
    assert phys is not None
    lim = profile.fit_quality.get("limits", {})
    grid_err, filled_err, par_err = [], [], []
    for k in range(len(table)):
        rest, row = table.drop(index=table.index[k]), table.iloc[[k]]
        b, i, o = (row[c].to_numpy(float) for c in ("batch_size", "input_len", "output_len"))
        refit, _ = fit_physical(
            rest, phys.shape, idle_power_w=phys.idle_power_w, kv_capacity_tokens=phys.kv_capacity_tokens,
            max_num_seqs=phys.max_num_seqs, prefill_chunk_tokens=phys.prefill_chunk_tokens,
            peak_flops=lim.get("peak_flops"), bandwidth_bps=lim.get("bandwidth_bps"), cross_validate=False,
        )  # fmt: skip
        for g, errs in (
            (CalibrationGrid.from_table(rest), grid_err),
            (CalibrationGrid.from_table(rest, refit), filled_err),
        ):
            pred = g.prefill_j_per_token(b, i) * b * i + g.decode_j_per_token(b, i, o) * b * (o - 1)
            errs.append(float(pred[0] / _total(row)[0] - 1))
        pm = ParametricModel.fit(rest)
        pre, dec = pm.batch_energy_j(b, i, o)
        par_err.append(float((pre + dec)[0] / _total(row)[0] - 1))
    return {
        "binned (grid, holes from nearest batch)": np.asarray(grid_err),
        "binned (grid, holes from physical)": np.asarray(filled_err),
        "parametric": np.asarray(par_err),
    }


def loo_table(profile: EnergyProfile) -> dict[str, dict[str, float]]:
    """LOO mean/max |error| of every model on the profile's calibration points."""
    assert profile.calibration is not None and profile.physical is not None
    t = usable(profile.calibration)
    errs = loo_grid_and_parametric(t, profile)
    phys = profile.physical
    errs["physical"], _ = leave_one_out(t, phys.shape, phys.prefill_chunk_tokens, _floors(profile))
    out = {}
    for name, e in errs.items():
        a = np.abs(e)
        out[name] = {
            "points": len(e),
            "mean": float(a.mean()),
            "max": float(a.max()),
            "rms": float(np.sqrt((e**2).mean())),
        }
    return out


def _floors(profile: EnergyProfile) -> Any:
    from llm_energy.modeling.fitting import time_floors

    lim = profile.fit_quality.get("limits", {})
    assert profile.physical is not None
    return time_floors(lim.get("peak_flops"), lim.get("bandwidth_bps"), profile.physical.idle_power_w)


def validation_rows(profiles: dict[str, EnergyProfile]) -> list[dict[str, Any]]:
    """Every validation run against every model of every profile given."""
    rows = []
    for path in sorted(VALID.glob("val-*.json")):
        run = ValidationRun.load(path)
        row: dict[str, Any] = {
            "run": path.stem.removeprefix("val-vllm-cudagraphs-"),
            "measured_j": run.energy_j,
            "requests": run.requests,
        }
        for label, prof in profiles.items():
            for err in compare(run, prof):
                key = f"{label}:{err.method}"
                row[key] = err.rel_error
                row[key + ":sigma"] = err.uncertainty_j / err.measured_j
        rows.append(row)
    return rows


def h100_on_h200() -> EnergyProfile:
    """The H100 vLLM profile with its physical model rescaled to the H200 by published peaks."""
    from dataclasses import replace

    from llm_energy.modeling.fitting import kv_capacity_from_memory

    src = load_profile("h100-llama-3.1-8b-vllm")
    assert src.physical is not None
    dst = gpu_spec("NVIDIA H200")
    kv = kv_capacity_from_memory(src.physical.shape, dst.memory_bytes, utilisation=0.85)
    return replace(
        src,
        physical=transfer(src.physical, gpu_spec(src.gpu_name), dst, kv_capacity_tokens=kv),
        gpu_name=dst.name,
    )


def budget_rows() -> list[dict[str, Any]]:
    """Fit on the calibration's points up to 3, 4, 5, 6.5 device-minutes; LOO and validation of each."""
    runs = pd.read_csv(CALIB).sort_values("created_at").reset_index(drop=True)
    t = pd.to_datetime(runs["created_at"])
    first_point_s = 5.0  # the first point's own measuring time (its timestamp is its end)
    elapsed = runs["load_s"].iloc[0] + first_point_s + (t - t.iloc[0]).dt.total_seconds()
    out = []
    for minutes in (3.0, 4.0, 5.0, 6.7):
        sub = runs[elapsed <= minutes * 60 + 1]
        row: dict[str, Any] = {"minutes": minutes, "points": len(sub)}
        try:
            prof = fit_profile(sub)
        except Exception as exc:  # noqa: BLE001 - a prefix too small to fit is a result, printed as such
            row["error"] = str(exc)
            out.append(row)
            continue
        row["loo"] = prof.fit_quality.get("loo_energy", {})
        errs = [r["h200:physical-continuous"] for r in validation_rows({"h200": prof})]
        row["validation_mean_abs"] = float(np.mean(np.abs(errs)))
        row["validation_max_abs"] = float(np.max(np.abs(errs)))
        out.append(row)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"loo": {name: loo_table(load_profile(name)) for name in PROFILES}}
    print("## Leave-one-out over every calibration point (|error| of prefill + decode energy)\n")
    print("| profile | model | points | mean | max |\n|---|---|---:|---:|---:|")
    for name, models in result["loo"].items():
        for model, s in models.items():
            print(f"| {name} | {model} | {s['points']} | {100 * s['mean']:.1f}% | {100 * s['max']:.1f}% |")
    profiles = {
        "h200": load_profile("h200-llama-3.1-8b-vllm"),
        "h100→h200": h100_on_h200(),
        "h100": load_profile("h100-llama-3.1-8b-vllm"),
    }
    rows = validation_rows(profiles)
    result["validation"] = rows
    cols = [
        "h200:physical-continuous",
        "h200:physical",
        "h200:binned",
        "h200:p1",
        "h200:parametric",
        "h200:flops",
        "h100→h200:physical-continuous",
        "h100:physical-continuous",
    ]
    print("\n## Validation on the H200 (estimate / measured − 1; ± the model's stated 1σ)\n")
    print("| run | requests | measured kJ | " + " | ".join(cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            keys = [k for k in r if (k == c or k.startswith(c + " ")) and not k.endswith(":sigma")]
            k = keys[0] if keys else None
            cells.append("—" if k is None else f"{_pct(r[k])} ± {100 * r[k + ':sigma']:.1f}%")
        print(f"| {r['run']} | {r['requests']} | {r['measured_j'] / 1e3:.1f} | " + " | ".join(cells) + " |")
    result["budget"] = budget_rows()
    print("\n## Error vs calibration budget (H200, physical model)\n")
    print("| device minutes | points | LOO mean | LOO max | validation mean abs | validation max abs |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b in result["budget"]:
        if "error" in b:
            print(f"| {b['minutes']} | {b['points']} | not fittable: {b['error']} | | | |")
            continue
        lo = b["loo"]
        print(
            f"| {b['minutes']} | {b['points']} | {100 * lo['mean_abs_rel_error']:.1f}% | "
            f"{100 * lo['max_abs_rel_error']:.1f}% | {100 * b['validation_mean_abs']:.1f}% | "
            f"{100 * b['validation_max_abs']:.1f}% |"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

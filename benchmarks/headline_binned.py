"""The seed's binned trace-level estimate from two profiles measured on one host (CPU only; issue 18).

The seed study's Table 4 costs every request of a trace at its own lengths, in bins, each bin at the engine's
largest feasible batch, from measured profiles of both engines, and reports 1 − E(vLLM) / E(PyTorch). Here:

1. that estimate for Azure conv and Azure code (2023), kept as the seed kept them (input ≤ 8,192 and
   output ≤ 512 tokens), from an HF eager and a vLLM CUDA-graphs profile, by `binned` (the seed's method) and
   `physical` (ours), each engine at its own largest feasible batch and both at batch 256 (the largest batch
   the HF eager calibration ran: no extrapolation in batch). Each figure carries the model's 1σ and the share
   of requests and energy outside the calibrated range; the saving's range takes both ends of both 1σ.
2. an out-of-sample check of both profiles against the headline's measured run (headline.md: the same
   150-request samples measured on an H200 earlier the same day): each padded HF eager batch as a static
   batch of its longest prompt and output, and the vLLM sample at batch 150 (all its requests at once).

    python benchmarks/headline_binned.py --hf-profile HF.json --vllm-profile VLLM.json \
        [--headline-dir docs/results/2026-12-02-h200-headline] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from llm_energy.estimate import estimate_trace
from llm_energy.modeling.profile import EnergyProfile, load_profile
from llm_energy.workloads import load_trace

MAX_INPUT, MAX_OUTPUT = 8192, 512
HF_BATCHES = (1, 4, 8, 16, 64)
SEED = {"azure-conv": 72.18, "azure-code": 37.58}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hf-profile", required=True)
    p.add_argument("--vllm-profile", required=True)
    p.add_argument("--headline-dir", type=Path, default=Path("docs/results/2026-12-02-h200-headline"))
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    return p.parse_args(argv)


def _estimate(lin: np.ndarray, lout: np.ndarray, prof: EnergyProfile, **kw: Any) -> dict[str, Any]:
    e = estimate_trace(lin, lout, prof, **kw).to_dict()
    return {
        k: e[k]
        for k in (
            "total_j",
            "uncertainty_j",
            "request_mean_j",
            "flops_ratio",
            "outside_request_share",
            "outside_energy_share",
            "prefill_share",
        )
    }


def saving(hf: dict[str, Any], vl: dict[str, Any]) -> dict[str, float]:
    """1 − vLLM / HF in %, with the range from both ends of both 1σ."""
    h, sh, v, sv = hf["total_j"], hf["uncertainty_j"], vl["total_j"], vl["uncertainty_j"]
    return {
        "saving_pct": 100 * (1 - v / h),
        "low_pct": 100 * (1 - (v + sv) / max(h - sh, 1e-9)),
        "high_pct": 100 * (1 - (v - sv) / (h + sh)),
    }


def _batch_label(hf_batch: int | None, vl_batch: int | None) -> str:
    if hf_batch == vl_batch:
        return "own largest" if hf_batch is None else str(hf_batch)
    return f"HF {hf_batch if hf_batch else 'own largest'}, vLLM {vl_batch if vl_batch else 'own largest'}"


def trace_estimates(hf: EnergyProfile, vl: EnergyProfile) -> list[dict[str, Any]]:
    rows = []
    for name in ("azure-conv", "azure-code"):
        t = load_trace(name)
        keep = (t.input_tokens <= MAX_INPUT) & (t.output_tokens <= MAX_OUTPUT)
        lin, lout = t.input_tokens[keep].astype(float), t.output_tokens[keep].astype(float)
        runs: list[tuple[str, int | None, int | None]] = [
            (m, b, b) for m in ("binned", "physical") for b in (None, 256)
        ]
        # How the saving depends on the baseline's batch alone (vLLM at its own largest): a sensitivity of the
        # model, not a measurement.
        runs += [("binned", b, None) for b in HF_BATCHES]
        for method, hf_batch, vl_batch in runs:
            h = _estimate(lin, lout, hf, method=method, batch_size=hf_batch)
            v = _estimate(lin, lout, vl, method=method, batch_size=vl_batch)
            rows.append(
                {
                    "trace": name,
                    "requests": int(keep.sum()),
                    "of": len(t.input_tokens),
                    "method": method,
                    "batch": _batch_label(hf_batch, vl_batch),
                    "hf": h,
                    "vllm": v,
                    **saving(h, v),
                    "seed_pct": SEED[name],
                }
            )
    return rows


def headline_check(hf: EnergyProfile, vl: EnergyProfile, folder: Path) -> list[dict[str, Any]]:
    """Predicted vs measured energy of the headline run's batches (out of sample: another run and host)."""
    rows = []
    for f in sorted(folder.glob("val-*.json")):
        run = json.loads(f.read_text())
        if run["engine"] == "hf":
            assert hf.physical is not None
            for b in run["batches"]:
                c = hf.physical.batch_cost(b["requests"], b["input_tokens_max"], b["output_tokens_max"])
                pred = float(c.prefill_j + c.decode_j)
                rows.append(_check_row(run, f.name, f"padded batch of {b['requests']}", pred, b["energy_j"]))
        else:
            lin, lout = np.asarray(run["input_tokens"], float), np.asarray(run["output_tokens"], float)
            n = len(lin)
            pred = estimate_trace(lin, lout, vl, method="physical", batch_size=n).total_j
            rows.append(
                _check_row(run, f.name, f"{n} requests at once, modelled at batch {n}", pred, run["energy_j"])
            )
    return rows


def _check_row(run: dict[str, Any], file: str, what: str, pred: float, measured: float) -> dict[str, Any]:
    return {
        "file": file,
        "trace": run["trace"],
        "engine": f"{run['engine']} {run['mode']}",
        "what": what,
        "predicted_j": pred,
        "measured_j": measured,
        "error_pct": 100 * (pred / measured - 1),
    }


def measured_saving(checks: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """1 − vLLM / HF eager of the headline run, from the profiles' predictions and as measured, per trace."""
    out = []
    for trace in sorted({c["trace"] for c in checks}):
        sums = {}
        for key in ("predicted_j", "measured_j"):
            hf = sum(c[key] for c in checks if c["trace"] == trace and c["engine"].startswith("hf"))
            vl = sum(c[key] for c in checks if c["trace"] == trace and c["engine"].startswith("vllm"))
            sums[key] = 100 * (1 - vl / hf)
        out.append((trace, sums["predicted_j"], sums["measured_j"]))
    return out


def print_tables(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print(
        "| trace | method | batch | HF eager J/request (±1σ, extrapolated req / energy) | "
        "vLLM J/request (±1σ, extrapolated req / energy) | saving [range] | seed |"
    )
    print("|---|---|---|---|---|---:|---:|")
    for r in rows:
        cells = []
        for k in ("hf", "vllm"):
            e = r[k]
            cells.append(
                f"{e['request_mean_j']:.1f} ± {100 * e['uncertainty_j'] / e['total_j']:.1f}% "
                f"({100 * e['outside_request_share']:.0f}% / {100 * e['outside_energy_share']:.0f}%)"
            )
        print(
            f"| {r['trace']} ({r['requests']:,} of {r['of']:,}) | {r['method']} | {r['batch']} | {cells[0]} | "
            f"{cells[1]} | {r['saving_pct']:.1f}% [{r['low_pct']:.1f}, {r['high_pct']:.1f}] | {r['seed_pct']}% |"
        )
    print("\n| trace | engine | measured | predicted J | measured J | error |")
    print("|---|---|---|---:|---:|---:|")
    for c in checks:
        print(
            f"| {c['trace']} | {c['engine']} | {c['what']} | {c['predicted_j']:,.0f} | {c['measured_j']:,.0f} | "
            f"{c['error_pct']:+.1f}% |"
        )
    print(
        "\nThe measured configuration (padded HF eager batches vs the vLLM sample), predicted and measured:"
    )
    for name, pred, meas in measured_saving(checks):
        print(f"  {name}: saving predicted {pred:.1f}%, measured {meas:.1f}%")
    print("\nFLOPs ratio (estimated / FLOPs-ideal), binned at the own largest batch:")
    for r in rows:
        if r["method"] == "binned" and r["batch"] == "own largest":
            print(
                f"  {r['trace']}: HF eager {r['hf']['flops_ratio']:.2f}x, vLLM {r['vllm']['flops_ratio']:.2f}x"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    hf, vl = load_profile(args.hf_profile), load_profile(args.vllm_profile)
    estimates, checks = trace_estimates(hf, vl), headline_check(hf, vl, args.headline_dir)
    result: dict[str, Any] = {
        "hf_profile": str(args.hf_profile),
        "vllm_profile": str(args.vllm_profile),
        "filters": {"max_input_tokens": MAX_INPUT, "max_output_tokens": MAX_OUTPUT},
        "estimates": estimates,
        "headline_check": checks,
        "headline_saving": [
            {"trace": t, "predicted_pct": p, "measured_pct": m} for t, p, m in measured_saving(checks)
        ],
    }
    print_tables(estimates, checks)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

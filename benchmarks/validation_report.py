"""Tables of docs/results/model-validation-h100.md from measured validation runs and bundled data (CPU only).

1. measured vs modelled for every `val-*.json` given (profile chosen by engine);
2. the seed study's Table 4 on our data: each trace estimated with the naive (HF eager) and the optimised
   (vLLM, CUDA graphs) profile at its largest measured batch, against the FLOPs ideal, and the saving;
3. error vs calibration budget: the vLLM profile refitted from random subsets of its calibration points,
   validated against the vLLM runs (median |error| over subsets and runs).

    python benchmarks/validation_report.py docs/results/2026-11-23-h100-{hf-eager-*,vllm-validation}/validate/val-*.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from llm_energy.estimate import estimate_trace
from llm_energy.modeling.profile import fit_profile, load_profile
from llm_energy.report.sample import bundled_calibration_frame
from llm_energy.validation.models import compare
from llm_energy.validation.offline import ValidationRun
from llm_energy.workloads import load_trace

PROFILES = {"hf": "h100-llama-3.1-8b-hf-eager", "vllm": "h100-llama-3.1-8b-vllm"}
NAIVE_BATCH, OPTIMISED_BATCH = 64, 128  # the largest batch each configuration was measured at


def validation_table(paths: list[Path]) -> list[ValidationRun]:
    """Print one row per run and model."""
    runs = sorted((ValidationRun.load(p) for p in paths), key=lambda r: (r.engine, r.trace, r.batch_size))
    print(
        "| trace | engine | batch | measured J (±) | J/request | "
        + " | ".join(
            ("binned", "binned-padded", "p1", "parametric", "parametric-padded", "flops", "flops-50%")
        )
        + " |"
    )
    print("|---" * 12 + "|")
    for run in runs:
        errors = {e.method.split(" ")[0]: e for e in compare(run, load_profile(PROFILES[run.engine]))}
        cells = [
            f"{errors[m].rel_error:+.1%}" if m in errors else "—"
            for m in (
                "binned",
                "binned-padded",
                "p1",
                "parametric",
                "parametric-padded",
                "flops",
                "flops-50%",
            )
        ]
        print(
            f"| {run.trace} | {run.engine} {run.mode} ({run.batching}) | {run.batch_size} | "
            f"{run.energy_j:,.0f} (±{run.uncertainty_j:,.0f}) | {run.j_per_request:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return runs


def table4() -> None:
    """Print the seed's Table 4 on the bundled profiles and the 2023 Azure traces."""
    print(
        "\n| trace | naive (HF eager, b64) kWh | ÷ FLOPs | optimised (vLLM CG, b128) kWh | ÷ FLOPs | saving |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("azure-conv", "azure-code"):
        tr = load_trace(name)
        naive = estimate_trace(
            tr.input_tokens, tr.output_tokens, load_profile(PROFILES["hf"]), batch_size=NAIVE_BATCH
        )
        best = estimate_trace(
            tr.input_tokens, tr.output_tokens, load_profile(PROFILES["vllm"]), batch_size=OPTIMISED_BATCH
        )
        saving = 1 - best.total_j / naive.total_j
        print(
            f"| {name} ({naive.requests} req) | {naive.total_kwh:.4f} ± {naive.uncertainty_j / 3.6e6:.4f} | "
            f"{naive.total_j / naive.flops_j:.1f}× | {best.total_kwh:.4f} ± {best.uncertainty_j / 3.6e6:.4f} | "
            f"{best.total_j / best.flops_j:.1f}× | {saving:.1%} |"
        )


def budget_curve(runs: list[ValidationRun], subsets: int = 20) -> None:
    """Print the median |binned error| on the vLLM runs vs the number of calibration points fitted."""
    frame = bundled_calibration_frame("h100-llama-3.1-8b-vllm-cudagraphs")
    frame = frame[frame["status"] == "ok"].reset_index(drop=True)
    vllm_runs = [r for r in runs if r.engine == "vllm"]
    rng = np.random.default_rng(0)
    print(
        "\n| calibration points | GPU-seconds in windows (median) | median abs error, binned | max abs error |"
    )
    print("|---|---|---|---|")
    for k in (6, 10, 15, 20, 25, len(frame)):
        errs, secs = [], []
        for _ in range(subsets if k < len(frame) else 1):
            idx = rng.choice(len(frame), size=k, replace=False)
            sub = frame.iloc[np.sort(idx)]
            try:
                prof = fit_profile(sub)
            except Exception:  # a subset too thin to fit (e.g. one batch size only)  # noqa: BLE001
                continue
            secs.append(
                float(
                    (
                        sub["prefill_duration_s"] * sub["prefill_repetitions"]
                        + sub["total_duration_s"] * sub["total_repetitions"]
                    ).sum()
                )
            )
            for run in vllm_runs:
                binned = next(e for e in compare(run, prof) if e.method == "binned")
                errs.append(abs(binned.rel_error))
        if errs:
            print(f"| {k} | {np.median(secs):.0f} | {np.median(errs):.1%} | {np.max(errs):.1%} |")


def main(argv: list[str]) -> int:
    """Print all three tables."""
    runs = validation_table([Path(p) for p in argv])
    table4()
    budget_curve(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

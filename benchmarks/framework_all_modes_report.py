"""The H200 framework figure for every engine mode, per machine, from the committed raw runs (issue 18).

The runs came from three device calls on two lent machines (docs/results/framework-h200.md): call 1 on one,
calls 2 and 3 back to back on another. A run's machine is read off its time: every run of call 1 is before
`SECOND_MACHINE_FROM`, every run of calls 2-3 after it (each call's env.txt holds its GPU UUID and start time).
Ratios are taken within one machine only.

    python benchmarks/framework_all_modes_report.py docs/results/2026-12-02-h200-framework-all-modes
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

SECOND_MACHINE_FROM = "2026-12-02T18:30"
"""Call 1 ran 17:52-18:00 UTC (GPU-aabfc81a…); calls 2-3 ran 18:46-19:01 UTC (GPU-6b58bf83…)."""

COLUMNS = ["hf/eager", "hf/compiled", "hf/cudagraphs", "hf-paged/paged", "vllm/eager", "vllm/cudagraphs"]


def load(folder: Path) -> pd.DataFrame:
    """Every run of the figure with its machine, J/request and its meter bound, decode ms/step."""
    runs = pd.concat([pd.read_csv(folder / "runs.csv"), pd.read_csv(folder / "anchor-runs.csv")])
    runs = runs[runs["status"] == "ok"].copy()
    runs["machine"] = ["B" if t >= SECOND_MACHINE_FROM else "A" for t in runs["created_at"]]
    runs["config"] = runs["engine"] + "/" + runs["mode"]
    runs["j_per_request"] = runs["total_energy_j"] / runs["batch_size"]
    runs["bound_j"] = runs["total_uncertainty_j"] / runs["batch_size"]
    runs["decode_ms_per_step"] = runs["decode_duration_s"] / (runs["output_len"] - 1) * 1e3
    return runs


def table(runs: pd.DataFrame, machine: str) -> str:
    """Markdown: J/request ± bound (decode ms/step, mean W) per batch and configuration on one machine."""
    sub = runs[runs["machine"] == machine]
    configs = [c for c in COLUMNS if c in set(sub["config"])]
    lines = ["| batch | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
    for batch in sorted(sub["batch_size"].unique()):
        cells = []
        for config in configs:
            row = sub[(sub["config"] == config) & (sub["batch_size"] == batch)]
            if row.empty:
                cells.append("—")
                continue
            r = row.iloc[0]
            cells.append(
                f"{r.j_per_request:.1f} ± {r.bound_j:.1f} ({r.decode_ms_per_step:.1f} ms, "
                f"{r.total_mean_power_w:.0f} W)"
            )
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(runs: pd.DataFrame, machine: str, over: str = "hf/eager") -> str:
    """Markdown: each configuration's J/request over `over`'s, same machine and batch."""
    sub = runs[runs["machine"] == machine].pivot_table(
        index="batch_size", columns="config", values="j_per_request"
    )
    configs = [c for c in COLUMNS if c in sub.columns and c != over]
    lines = [
        "| batch | " + " | ".join(f"{c} / {over}" for c in configs) + " |",
        "|---" * (len(configs) + 1) + "|",
    ]
    for batch, row in sub.iterrows():
        cells = ["—" if pd.isna(row[c]) else f"{row[c] / row[over]:.2f}×" for c in configs]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_effect(runs: pd.DataFrame) -> str:
    """Markdown: machine B's J/request over machine A's for the configurations measured on both."""
    piv = runs.pivot_table(index=["config", "batch_size"], columns="machine", values="j_per_request").dropna()
    lines = ["| configuration | batch | A | B | B / A |", "|---|---:|---:|---:|---:|"]
    for (config, batch), row in piv.iterrows():
        lines.append(f"| {config} | {batch} | {row['A']:.1f} | {row['B']:.1f} | {row['B'] / row['A']:.2f}× |")
    return "\n".join(lines)


def main(folder: str) -> None:
    runs = load(Path(folder))
    for machine in ("A", "B"):
        print(f"## Machine {machine}\n\n{table(runs, machine)}\n\n{ratios(runs, machine)}\n")
    print(f"## Machine B over machine A\n\n{machine_effect(runs)}")


if __name__ == "__main__":
    main(sys.argv[1])

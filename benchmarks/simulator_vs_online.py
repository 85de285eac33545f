"""The simulator against measured online runs: one row per measured rate, measured vs simulated.

Reads `online_gpu.py` result folders (online_gpu.json and serving.db, or serving.db.xz as kept in
docs/results), and for each measured run simulates the same trace window at the same time scale with
`llm-energy simulate` (one GPU, policy single, the run's max_num_seqs, the given profile). Prints one table:
steady-state J/request (and above idle), p50/p90 TTFT and TPOT, measured / simulated, with Δ = simulated /
measured − 1. Percentiles are over the successful requests of serving.db (`ttft_s`, `tpot_s`: the replay's
own per-request figures), on the simulated side over `simulate --json`'s `summary`.

    PYTHONPATH=src python3 benchmarks/simulator_vs_online.py --profile h200-llama-3.1-8b-vllm \
        docs/results/2026-12-02-h200-simulator-online/prefix-caching-on:1 \
        docs/results/2026-12-02-h200-simulator-online/online [--json OUT]

`FOLDER:SCALES` keeps only those time scales of a folder (comma-separated).
"""

from __future__ import annotations

import argparse
import json
import lzma
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def serving_db(folder: Path, tmp: Path) -> Path:
    """serving.db of a folder, unpacked from serving.db.xz where that is how it is kept."""
    plain = folder / "serving.db"
    if plain.exists():
        return plain
    out = tmp / f"{abs(hash(str(folder)))}.db"
    out.write_bytes(lzma.decompress((folder / "serving.db.xz").read_bytes()))
    return out


def measured_rows(spec: str, tmp: Path) -> list[dict[str, Any]]:
    """One dict per run of a result folder: the JSON row plus percentiles from serving.db."""
    folder_s, _, scales_s = spec.partition(":")
    folder = Path(folder_s)
    keep = {float(s) for s in scales_s.split(",")} if scales_s else None
    result = json.loads((folder / "online_gpu.json").read_text())
    con = sqlite3.connect(serving_db(folder, tmp))
    rows = []
    for r in result["rates"]:
        if keep is not None and r["time_scale"] not in keep:
            continue
        q = con.execute(
            "SELECT ttft_s, tpot_s FROM serving_requests WHERE run_id = ? AND success = 1", (r["run_id"],)
        ).fetchall()
        ttft = np.array([a for a, _ in q if a is not None], float)
        tpot = np.array([b for _, b in q if b is not None], float)
        rows.append(
            {
                "folder": str(folder),
                "trace": r.get("trace", result["trace"]),
                "time_scale": r["time_scale"],
                "window_s": r.get("window_s", result["window_s"]),
                "max_num_seqs": result["max_num_seqs"],
                "requests": r["requests"],
                "ok": r["ok"],
                "j_per_request": r["steady_j_per_request"],
                "dynamic_j_per_request": r["steady_dynamic_j_per_request"],
                "idle_power_w": r["idle_power_w"],
                "ttft_p50_s": float(np.percentile(ttft, 50)),
                "ttft_p90_s": float(np.percentile(ttft, 90)),
                "tpot_p50_s": float(np.percentile(tpot, 50)) if len(tpot) else None,
                "tpot_p90_s": float(np.percentile(tpot, 90)) if len(tpot) else None,
                "slo_attainment_pct": r["slo_attainment_pct"],
            }
        )
    return rows


def simulated(row: dict[str, Any], profile: str) -> dict[str, Any]:
    """`llm-energy simulate` of the same window: trace seconds [0, wall window × scale) at the scale."""
    scale, wall = row["time_scale"], row["window_s"]
    cmd = [
        sys.executable, "-m", "llm_energy", "simulate", "--profile", profile, "--trace", row["trace"],
        "--window", f"0,{wall * scale:g}", "--time-scale", f"{scale:g}", "--gpus", "1", "--policy", "single",
        "--max-num-seqs", str(row["max_num_seqs"]), "--json",
    ]  # fmt: skip
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    s, e = out["summary"], out["energy"]
    return {
        "command": " ".join(["llm-energy", *cmd[3:]]),
        "requests": s["requests"],
        "j_per_request": e["energy_per_request_j"],
        "dynamic_j_per_request": e.get("dynamic_energy_per_request_j"),
        "ttft_p50_s": s["ttft"]["p50_s"],
        "ttft_p90_s": s["ttft"]["p90_s"],
        "tpot_p50_s": s["tpot"]["p50_s"],
        "tpot_p90_s": s["tpot"]["p90_s"],
        "slo_attainment_pct": s["slo_attainment_pct"],
    }


def _d(sim: float | None, meas: float | None) -> str:
    return "—" if not sim or not meas else f"{sim / meas - 1:+.0%}"


def table(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Markdown: one line per run."""
    head = (
        "| trace, rate | requests | J/request meas / sim (Δ) | above idle meas / sim | TTFT p50 ms | TTFT p90 ms "
        "| TPOT p50 ms | TPOT p90 ms | SLO % meas / sim |\n|---|---:|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for m, s in pairs:

        def ms(key: str) -> str:
            a, b = m[key], s[key]
            if a is None or b is None:
                return "—"
            return f"{a * 1e3:,.1f} / {b * 1e3:,.1f} ({_d(b, a)})"

        name = Path(m["trace"]).stem.replace("_synthetic_trace", "")
        lines.append(
            f"| {name} {m['time_scale']:g}× | {m['ok']} | {m['j_per_request']:.1f} / {s['j_per_request']:.1f} "
            f"(**{_d(s['j_per_request'], m['j_per_request'])}**) | {m['dynamic_j_per_request']:.1f} / "
            f"{(s['dynamic_j_per_request'] or float('nan')):.1f} | {ms('ttft_p50_s')} | {ms('ttft_p90_s')} | "
            f"{ms('tpot_p50_s')} | {ms('tpot_p90_s')} | {m['slo_attainment_pct']:.0f} / "
            f"{s['slo_attainment_pct']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="online_gpu.py result folders, FOLDER[:SCALES]")
    ap.add_argument("--profile", default="h200-llama-3.1-8b-vllm")
    ap.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for spec in args.folders for r in measured_rows(spec, Path(tmp))]
    pairs = [(m, simulated(m, args.profile)) for m in rows]
    print(table(pairs))
    if args.json is not None:
        args.json.write_text(json.dumps([{"measured": m, "simulated": s} for m, s in pairs], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

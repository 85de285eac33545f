"""The recommender against a measured online grid: one row per configuration replayed on the same window.

Reads `online_gpu.py` result folders (online_gpu.json, serving.db or serving.db.xz) that replayed the same trace
window, and the recommendation made before them (`recommend --scorer simulate --json`), and prints one table.
Per configuration:

- **whole-replay energy**: every meter window from the first request sent to the last token, / requests (all
  configurations served the same requests, so this is the energy of the same work); and the same **on a common
  span**: the slowest span among the configurations that meet the SLO, the faster ones' remaining time costed at
  their own measured idle power (the GPU would sit idle, not switch off); a configuration that misses the SLO
  and ran longer keeps its own whole replay;
- the steady-state J/request `replay` reports (warm-up and drain left out; with 456 requests in 30 s that
  leaves the window to fewer than 310 completions, which is why the whole replay is the comparison);
- p90 TTFT/TPOT, SLO attainment, the decoding concurrency (requests between first token and last, sampled
  over the span), mean power, and the simulator's figures where the recommendation scored the configuration.

    PYTHONPATH=src python3 benchmarks/recommend_online_report.py \
        --recommendation docs/results/2026-12-02-h200-recommend-online/recommendation.json \
        cudagraphs-256=docs/results/2026-12-02-h200-simulator-online/online:4 \
        cudagraphs-128=docs/results/2026-12-02-h200-recommend-online/grid-cudagraphs-128 ...
"""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from simulator_vs_online import serving_db  # the sibling script: serving.db, or serving.db.xz unpacked

from llm_energy.recommend.online_check import SLO_ATTAINMENT_PCT, common_span_s, idle_filled_j, replay_energy


def measure(name: str, spec: str, tmp: Path) -> dict[str, Any]:
    """The figures of one configuration's run (FOLDER[:SCALE], the run at that time scale)."""
    folder_s, _, scale_s = spec.partition(":")
    folder = Path(folder_s)
    result = json.loads((folder / "online_gpu.json").read_text())
    runs = [r for r in result["rates"] if not scale_s or r["time_scale"] == float(scale_s)]
    run = runs[0]
    con = sqlite3.connect(serving_db(folder, tmp))
    q = np.array(
        con.execute(
            "SELECT sent_s, first_token_s, done_s FROM serving_requests WHERE run_id = ?", (run["run_id"],)
        ).fetchall(),
        float,
    )
    iv = np.array(
        con.execute(
            "SELECT start_s, end_s, energy_j FROM serving_intervals WHERE run_id = ? ORDER BY start_s",
            (run["run_id"],),
        ).fetchall(),
        float,
    )
    s0, s1 = float(q[:, 0].min()), float(np.nanmax(q[:, 2]))
    # the same whole-replay energy `recommend --validate-online` takes: meter windows over [first sent, last done]
    whole = replay_energy(
        [SimpleNamespace(sent_s=a, done_s=c) for a, _, c in q], [tuple(w) for w in iv.tolist()]
    )
    if whole is None:
        raise SystemExit(f"{folder}: run {run['run_id']} has no requests or no meter windows")
    energy_j, metered_s = whole
    t = np.linspace(s0, s1, 4000)
    decoding = ((q[:, 1][None] <= t[:, None]) & (q[:, 2][None] > t[:, None])).sum(1)
    return {
        "name": name,
        "mode": result["vllm_mode"],
        "max_num_seqs": result["max_num_seqs"],
        "requests": run["requests"],
        "ok": run["ok"],
        "span_s": s1 - s0,
        "metered_s": metered_s,
        "energy_j": energy_j,
        "mean_power_w": energy_j / metered_s,
        "idle_power_w": run["idle_power_w"],
        "steady_j_per_request": run["steady_j_per_request"],
        "ttft_p90_s": run["ttft_p90_s"],
        "tpot_p90_s": run["tpot_p90_s"],
        "slo_attainment_pct": run["slo_attainment_pct"],
        "decoding_mean": float(decoding.mean()),
        "decoding_p90": float(np.percentile(decoding, 90)),
        "server_startup_s": result.get("server_startup_s"),
    }


def table(rows: list[dict[str, Any]], rec: dict[str, Any] | None) -> str:
    """Markdown, with the common-span energy and the ratio to the least of it among those meeting the SLO."""
    ok = [r for r in rows if r["slo_attainment_pct"] >= SLO_ATTAINMENT_PCT]
    # The span of the configurations compared (those meeting the SLO): one that misses it may queue for far
    # longer, and its span would charge every other one idle time it never needed (the rule of
    # `recommend --validate-online`, one implementation).
    span = common_span_s([r["metered_s"] for r in rows], [r in ok for r in rows])
    for r in rows:
        r["common_span_j"] = idle_filled_j(r["energy_j"], r["metered_s"], span, r["idle_power_w"])
    best = min(r["common_span_j"] for r in ok) if ok else float("nan")
    sims = {(profile_mode(c["profile"]), c["max_num_seqs"]): c for c in (rec or {}).get("candidates", [])}
    lines = [
        f"common span: {span:.1f} s (the longest replay among those meeting the SLO; a longer one keeps its own)",
        "| configuration | J/request, whole replay | J/request, common span | vs best | steady J/request "
        "| simulated J/request | p90 TTFT ms | p90 TPOT ms | SLO % | decoding mean / p90 | mean W |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        sim = sims.get((r["mode"], r["max_num_seqs"]))
        lines.append(
            f"| {r['name']} | {r['energy_j'] / r['requests']:.2f} | {r['common_span_j'] / r['requests']:.2f} | "
            f"{r['common_span_j'] / best:.3f}×{'' if r in ok else ' (misses SLO)'} | {r['steady_j_per_request']:.2f} | "
            f"{'—' if sim is None else format(sim['energy_per_request_j'], '.2f')} | {r['ttft_p90_s'] * 1e3:,.0f} | "
            f"{r['tpot_p90_s'] * 1e3:.1f} | {r['slo_attainment_pct']:.0f} | {r['decoding_mean']:.0f} / "
            f"{r['decoding_p90']:.0f} | {r['mean_power_w']:.0f} |"
        )
    return "\n".join(lines + spread(rows))


def spread(rows: list[dict[str, Any]]) -> list[str]:
    """Configurations replayed more than once: n, median and min–max of the common-span J/request."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["max_num_seqs"]), []).append(r["common_span_j"] / r["requests"])
    out = [
        f"{mode} {seqs}: n = {len(v)}, median {np.median(v):.2f}, min–max {min(v):.2f}–{max(v):.2f} J/request "
        f"(common span; spread {100 * (max(v) - min(v)) / np.median(v):.1f}% of the median)"
        for (mode, seqs), v in groups.items()
        if len(v) > 1
    ]
    return ["", *out] if out else []


@functools.cache  # every candidate of a recommendation names one of a few profiles
def profile_mode(name: str) -> str:
    """The vLLM mode of a recommendation candidate's profile (bundled name or file)."""
    from llm_energy.modeling.profile import load_profile

    return load_profile(name).mode or "cudagraphs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+", help="NAME=FOLDER[:SCALE]")
    ap.add_argument("--recommendation", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rec = json.loads(args.recommendation.read_text()) if args.recommendation else None
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(*c.split("=", 1), Path(tmp)) for c in args.configs]
    print(table(rows, rec))
    if rec is not None:
        pick = {
            k: f"{profile_mode(rec[k]['profile'])} {rec[k]['max_num_seqs']}" for k in ("choice", "runner_up")
        }
        print(f"recommendation: choice {pick['choice']}, runner-up {pick['runner_up']}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

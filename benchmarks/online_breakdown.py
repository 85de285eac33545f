"""Online vs offline from the raw files of an online run: above-idle (dynamic) energy and concurrency.

Reads what `online_gpu.py` wrote and the docs keep (`online_gpu.json`, `offline-s*.json`, `requests.csv.gz`,
`monitor_samples.csv.gz`) and prints, per time scale:

- total and dynamic (total − idle power × duration) GPU energy per request of both arms, and their ratios.
  Online: the meter's energy over the whole run (first send to last completion) and the idle power measured
  before that rate; offline: the one window around the offline run and its own idle power.
- the concurrency distribution: the share of the run's wall time with 0, 1, 2–4, 5–8, 9–16, 17–64 and > 64
  requests in flight (sent, not yet complete), its time-weighted median and mean, and the mean GPU power
  (monitor samples, ~100 ms apart) while each bucket held.

No GPU needed:

    python benchmarks/online_breakdown.py docs/results/2026-11-23-h100-online-vllm/online
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BUCKETS = [(0, 0), (1, 1), (2, 4), (5, 8), (9, 16), (17, 64), (65, 10**9)]


def in_flight(sent: np.ndarray, done: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Requests sent at or before each time in `t` and not yet complete."""
    return np.searchsorted(np.sort(sent), t, side="right") - np.searchsorted(np.sort(done), t, side="right")


def breakdown(
    req: pd.DataFrame, mon: pd.DataFrame, rate: dict[str, Any], offline: dict[str, Any]
) -> dict[str, Any]:
    """One time scale's figures (see the module docstring)."""
    sent, done = req["sent_s"].to_numpy(float), req["done_s"].to_numpy(float)
    t0, t1 = float(sent.min()), float(done.max())
    span = t1 - t0
    # Time-weighted concurrency: in flight is constant between consecutive events.
    edges = np.unique(np.concatenate([sent, done]))
    mids, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    n = in_flight(sent, done, mids)
    order = np.argsort(n)
    cum = np.cumsum(widths[order]) / widths.sum()
    median_n = int(n[order][np.searchsorted(cum, 0.5)])
    mean_n = float((n * widths).sum() / widths.sum())
    m = mon[(mon["t_s"] >= t0) & (mon["t_s"] <= t1)]
    m_n = in_flight(sent, done, m["t_s"].to_numpy(float))
    m_w = m["total_power_w"].to_numpy(float)
    buckets = []
    for lo, hi in BUCKETS:
        share = float(widths[(n >= lo) & (n <= hi)].sum() / widths.sum())
        sel = (m_n >= lo) & (m_n <= hi)
        buckets.append(
            {
                "in_flight": f"{lo}" if lo == hi else (f"> {lo - 1}" if hi >= 10**9 else f"{lo}-{hi}"),
                "time_share": share,
                "mean_power_w": float(m_w[sel].mean()) if sel.any() else None,
            }
        )
    on, off = offline["online"], offline["offline"]
    idle_on = float(rate["idle_power_w"])
    on_total = float(on["total_j"])
    on_dyn = on_total - idle_on * span
    off_total, off_s, idle_off = (
        float(off["total_j"]),
        float(offline["_duration_s"]),
        float(offline["_idle_w"]),
    )
    off_dyn = off_total - idle_off * off_s
    k = int(on["requests"])
    return {
        "time_scale": rate["time_scale"],
        "requests": k,
        "online_span_s": span,
        "online_j_per_request": on_total / k,
        "online_dynamic_j_per_request": on_dyn / k,
        "online_idle_share": idle_on * span / on_total,
        "online_idle_power_w": idle_on,
        "offline_s": off_s,
        "offline_j_per_request": off_total / k,
        "offline_dynamic_j_per_request": off_dyn / k,
        "offline_idle_power_w": idle_off,
        "ratio_total": on_total / off_total,
        "ratio_dynamic": on_dyn / off_dyn,
        "monitor_median_power_w": float(np.median(m_w)),
        "monitor_mean_power_w": float(m_w.mean()),
        "in_flight_median": median_n,
        "in_flight_mean": mean_n,
        "in_flight_max": int(n.max()),
        "time_share_none_in_flight": buckets[0]["time_share"],
        "buckets": buckets,
        "output_tokens_per_s": float(req["output_tokens_received"].sum() / span),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table for every time scale of the run folder; `--json` writes the figures too."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="the run's online/ folder")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    f: Path = args.folder
    summary = json.loads((f / "online_gpu.json").read_text())
    req_all = pd.read_csv(f / "requests.csv.gz")
    mon_all = pd.read_csv(f / "monitor_samples.csv.gz")
    rows = []
    for rate in summary["rates"]:
        scale = rate["time_scale"]
        off_file = f / f"offline-s{scale:g}.json"
        if "offline" not in rate or not off_file.exists():
            continue
        off_run = json.loads(off_file.read_text())
        offline = {
            **rate["offline"],
            "_duration_s": off_run["duration_s"],
            "_idle_w": off_run["idle_power_w"],
        }
        rid = rate["run_id"]
        rows.append(
            breakdown(req_all[req_all["run_id"] == rid], mon_all[mon_all["run_id"] == rid], rate, offline)
        )
    print(
        "| time scale | online J/request (dynamic) | offline J/request (dynamic) | ratio total | ratio dynamic"
        " | idle share online | median / mean power W | in flight median / mean / max | time with none in flight |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['time_scale']:g}× | {r['online_j_per_request']:.1f} ({r['online_dynamic_j_per_request']:.1f})"
            f" | {r['offline_j_per_request']:.1f} ({r['offline_dynamic_j_per_request']:.1f})"
            f" | {r['ratio_total']:.2f}× | {r['ratio_dynamic']:.2f}× | {r['online_idle_share']:.0%}"
            f" | {r['monitor_median_power_w']:.0f} / {r['monitor_mean_power_w']:.0f}"
            f" | {r['in_flight_median']} / {r['in_flight_mean']:.1f} / {r['in_flight_max']}"
            f" | {r['time_share_none_in_flight']:.0%} |"
        )
    print()
    print("| time scale | " + " | ".join(f"{b['in_flight']} in flight" for b in rows[0]["buckets"]) + " |")
    print("|---:|" + "---:|" * len(rows[0]["buckets"]))
    for r in rows:
        cells = [
            f"{b['time_share']:.0%}" + ("" if b["mean_power_w"] is None else f" ({b['mean_power_w']:.0f} W)")
            for b in r["buckets"]
        ]
        print(f"| {r['time_scale']:g}× | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Refit every bundled profile from its bundled calibration data (all measured points, every model).

For each `src/llm_energy/data/calibration/<stem>.csv` this fits the profile (physical model, grid,
parametric; leave-one-out over every point) and writes `src/llm_energy/data/profiles/<stem>.json`. What the
runs do not record is taken from the sidecar's `fit` block (e.g. the idle power measured on that host, or the
engine's max_num_seqs from the spec), and says so in the profile's fit report.

    python benchmarks/bundle_profiles.py [STEM ...]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from llm_energy.modeling.profile import fit_profile
from llm_energy.report.sample import bundled_calibration_frame

OUT = Path("src/llm_energy/data/profiles")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("stems", nargs="*")
    args = ap.parse_args(argv)
    folder = resources.files("llm_energy").joinpath("data", "calibration")
    stems = args.stems or sorted(f.name[:-4] for f in folder.iterdir() if f.name.endswith(".csv"))
    for stem in stems:
        meta = json.loads(folder.joinpath(f"{stem}.json").read_text(encoding="utf-8"))
        fit = meta.get("fit", {})
        prof = fit_profile(
            bundled_calibration_frame(stem),
            source=f"llm_energy/data/calibration/{stem}.csv ({meta.get('measured', '?')})",
            idle_power_w=fit.get("idle_power_w"),
            max_num_seqs=fit.get("max_num_seqs"),
        )
        prof.save(OUT / f"{stem}.json")
        q = prof.fit_quality.get("loo_energy", {})
        print(
            f"{stem}: {prof.points} points; physical leave-one-out mean {q.get('mean_abs_rel_error', float('nan')):.1%}"
            f" max {q.get('max_abs_rel_error', float('nan')):.1%} -> {OUT / stem}.json"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

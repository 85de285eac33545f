"""Recommend, then measure: the recommendation vs the HF eager baseline, and the recommender's accuracy.

On one sample of a trace (default: 300 Azure conv requests with input ≤ 2048 and output ≤ 128 tokens, the
HF eager calibration range, so the padded HF batches fit the time), this script

(a) recommends from the bundled H100 profiles (vLLM cudagraphs, HF eager) at the trace's rate and SLO and
    validates it with `validate_recommendation` (the code of `llm-energy recommend --validate`): the chosen
    and the baseline configuration run on the sample, measured vs modelled J/request, the measured saving
    with its bounds beside the modelled one, latency and SLO attainment;
(b) measures a broad candidate grid on the same sample (vLLM cudagraphs max_num_seqs 16/64/128, HF eager
    batch 16/64; configurations already measured in (a) are reused) and reports the recommendation's measured
    J/request as a ratio to the best measured one and its rank (goal ≤ 1.05×).

Every run is written as soon as it finishes (`<out>/runs/<engine>-<mode>-b<B>.json`) and `results.json` is
rewritten after each, so a command cut short keeps what it measured. A configuration whose estimated time
(load + modelled run) does not fit the remaining `--budget-s` is skipped and listed; runs found in
`--reuse DIR` (a previous command's `runs/`) are not measured again, so the grid can finish in a second
command. No GPU setting is changed.

    PYTHONPATH=src python3 benchmarks/recommend_gpu.py --out-dir OUT          # H100, ≤ 9 minutes
    PYTHONPATH=src python3 benchmarks/recommend_gpu.py --out-dir OUT --smoke  # CPU, simulated engine, seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

H100_GRID = [
    ("h100-llama-3.1-8b-vllm", 64),
    ("h100-llama-3.1-8b-hf-eager", 64),
    ("h100-llama-3.1-8b-vllm", 128),
    ("h100-llama-3.1-8b-vllm", 16),
    ("h100-llama-3.1-8b-hf-eager", 16),
]
"""The grid, in the order it is measured after (a): the likely best first, HF eager batch 16 (~100 s of
padded batches, plainly worse than batch 64) last, so a budget that runs short drops the least telling."""
LOAD_S = {"vllm": 150.0, "hf": 25.0, "simulated": 0.0}
"""Seconds to budget per model load (vLLM on the H100: 63–146 s measured, with its compile and graphs)."""
SAFETY = 1.3
"""Modelled run time × this is budgeted (the static runs' padding is in the model; queue tails are not)."""


class OverBudget(Exception):
    """A configuration would not finish within the remaining budget."""


def _smoke_profiles(work: Path) -> dict[str, Any]:
    from llm_energy.engines.simulated import SIMULATED_CALIBRATION_SPEC
    from llm_energy.modeling.profile import fit_profile
    from llm_energy.store import Store
    from llm_energy.sweep.spec import parse_spec
    from llm_energy.sweep.sweep import run_sweep

    with Store(work / "smoke-calibration.db") as store:
        run_sweep(parse_spec(SIMULATED_CALIBRATION_SPEC), store)
        return {"sim": fit_profile(store.runs_frame())}


def estimate_run_s(profile: Any, batch: int, lin: Any, lout: Any, static: bool) -> float:
    """Modelled seconds to run the sample at `batch`.

    Static: its padded batches back to back (each at its longest input and output). Continuous: about
    n / batch full waves at each wave's mean shape (the queue's partly filled tail is not modelled).
    """
    import numpy as np

    shape = np.max if static else np.mean
    total = 0.0
    for lo in range(0, len(lin), batch):
        b = min(batch, len(lin) - lo)
        li, lo_ = float(shape(lin[lo : lo + b])), float(shape(lout[lo : lo + b]))
        prefill_s = float(profile.grid.prefill_batch_s(b, li))
        total += prefill_s + max(lo_ - 1, 0) * float(profile.grid.decode_step_s(b, li, max(lo_, 2)))
    return total


def main(argv: list[str] | None = None) -> int:
    """Run (a) and (b); return 0 when every planned configuration was measured."""
    from llm_energy.modeling.profile import load_profile
    from llm_energy.recommend import recommend
    from llm_energy.recommend.output import recommendation_dict
    from llm_energy.recommend.validation import SampleSpec, configs_to_measure, validate_recommendation
    from llm_energy.validation.engine import measure_run
    from llm_energy.validation.offline import ValidationRun, sample_requests
    from llm_energy.workloads import load_trace
    from llm_energy.workloads.slo import parse_slo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--trace", default="azure-conv")
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-input-tokens", type=int, default=2048)
    ap.add_argument("--max-output-tokens", type=int, default=128)
    ap.add_argument("--slo", default="ttft=2s,tpot=100ms")
    ap.add_argument("--rate", type=float, default=None, help="arrival rate, req/s (default: the trace's)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--budget-s", type=float, default=500.0, help="stop starting runs that would end later")
    ap.add_argument("--reuse", type=Path, nargs="*", default=[], help="runs/ folders of earlier commands")
    ap.add_argument("--smoke", action="store_true", help="CPU: the simulated engine, a small sample")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    out: Path = args.out_dir
    (out / "runs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(out / "recommend_gpu.log"), logging.StreamHandler(sys.stderr)],
        force=True,
    )
    log = logging.getLogger("recommend_gpu")

    if args.smoke:
        profiles = _smoke_profiles(out)
        grid = [("sim", 4), ("sim", 16)]
        args.device, args.idle_s = "cpu", min(args.idle_s, 0.5)
        args.sample = min(args.sample, 60)
        args.rate = args.rate or 0.5  # what one simulated GPU keeps up with
    else:
        profiles = {name: load_profile(name) for name in dict.fromkeys(p for p, _ in H100_GRID)}
        grid = list(H100_GRID)
    trace = load_trace(args.trace)
    rate = args.rate or trace.summary().rate_per_s or 1.0
    slo_s = parse_slo(args.slo)
    rec = recommend(profiles, trace.input_tokens, trace.output_tokens, rate_per_s=rate, slo_s=slo_s)
    (out / "recommendation.json").write_text(json.dumps(recommendation_dict(rec), indent=2) + "\n")
    chosen, baseline = configs_to_measure(rec)
    log.info("recommendation: %s; baseline: %s", chosen, baseline)
    spec = SampleSpec(args.trace, args.sample, args.seed, args.max_input_tokens, args.max_output_tokens)
    drawn, eligible = sample_requests(
        trace, args.sample, seed=args.seed, max_input_tokens=args.max_input_tokens,
        max_output_tokens=args.max_output_tokens,
    )  # fmt: skip
    name_of = {(p.engine, p.mode): n for n, p in profiles.items()}
    runs: dict[tuple[str, int], ValidationRun] = {}
    skipped: dict[str, str] = {}
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "rate_per_s": rate}

    def run_file(engine: str, mode: str | None, batch: int) -> str:
        return f"{engine}-{mode}-b{batch}.json"

    def measure(trace_name: str, n: int, batch: int, **kw: Any) -> ValidationRun:
        engine, mode = kw["engine"], kw["mode"]
        key = (name_of[engine, mode], batch)
        if key in runs:
            return runs[key]
        fname = run_file(engine, mode, batch)
        for folder in [out / "runs", *args.reuse]:
            if (folder / fname).exists():
                log.info("%s: reused from %s", fname, folder)
                runs[key] = ValidationRun.load(folder / fname)
                return runs[key]
        prof = profiles[key[0]]
        static = engine == "hf"
        need_s = (
            LOAD_S.get(engine, 30.0)
            + kw["idle_s"]
            + SAFETY * estimate_run_s(prof, batch, drawn.input_tokens, drawn.output_tokens, static)
        )
        left_s = args.budget_s - (time.monotonic() - t_start)
        if need_s > left_s:
            raise OverBudget(f"{fname}: needs ~{need_s:.0f} s, {left_s:.0f} s left")
        t0 = time.monotonic()
        run = measure_run(trace_name, n, batch, on_status=log.info, **kw)
        run.save(out / "runs" / fname)
        log.info(
            "%s: %.1f ± %.1f J/request in %.0f s (budgeted %.0f s)",
            fname, run.j_per_request, run.uncertainty_j / run.requests, time.monotonic() - t0, need_s,
        )  # fmt: skip
        runs[key] = run
        return run

    def write() -> None:
        results["skipped"] = skipped
        results["elapsed_s"] = time.monotonic() - t_start
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")

    # (a) the recommendation against the baseline, measured.
    try:
        check = validate_recommendation(
            rec, profiles, spec, device=args.device, idle_s=args.idle_s, measure=measure
        )
        results["validation"] = check.to_dict()
    except OverBudget as exc:
        skipped["validation"] = str(exc)
    write()
    # (b) the grid on the same sample; the recommendation's rank among the measured.
    for name, batch in grid:
        prof = profiles[name]
        kw = {
            "model": prof.model, "engine": prof.engine, "mode": prof.mode, "device": args.device,
            "seed": args.seed, "max_input_tokens": args.max_input_tokens,
            "max_output_tokens": args.max_output_tokens, "batching": None, "options": {},
            "idle_s": args.idle_s,
        }  # fmt: skip
        try:
            measure(args.trace, args.sample, batch, **kw)
        except OverBudget as exc:
            skipped[f"{name} b{batch}"] = str(exc)
            log.info("skipped %s", exc)
        results["accuracy"] = accuracy(rec, runs, (chosen.profile, chosen.batch_size), profiles, drawn)
        write()
    summary(results, log)
    return 0 if not skipped else 1


def accuracy(
    rec: Any, runs: dict[tuple[str, int], Any], chosen: tuple[str, int], profiles: dict[str, Any], drawn: Any
) -> dict[str, Any]:
    """The chosen configuration's measured J/request against every measured one: ratio to the best, rank."""
    import numpy as np

    from llm_energy.recommend.search import Evaluator

    ev = Evaluator(profiles, drawn.input_tokens, drawn.output_tokens)
    rows = []
    for (name, batch), run in sorted(runs.items(), key=lambda kv: kv[1].j_per_request):
        whole = next(
            (
                c
                for c in rec.candidates
                if c.profile == name and c.batch_size == batch and c.clock_mhz is None
            ),
            None,
        )
        model = ev.candidate(name, batch, None, np.ones(len(drawn), bool), rec.rate_per_s, rec.slo_s, None)
        rows.append(
            {
                "profile": name,
                "engine": run.engine,
                "mode": run.mode,
                "batch_size": batch,
                "batching": run.batching,
                "measured_j_per_request": run.j_per_request,
                "measured_unc_j_per_request": run.uncertainty_j / run.requests,
                "modelled_j_per_request": None if model is None else model.energy_per_request_j,
                "modelled_feasible_on_trace": None if whole is None else whole.feasible,
                "chosen": (name, batch) == chosen,
                "latency_note": run.latency_note,
            }
        )
    if chosen not in runs:
        return {"measured": rows, "note": "the chosen configuration was not measured"}
    mine = runs[chosen].j_per_request
    feasible = [r for r in rows if r["modelled_feasible_on_trace"] is not False]
    return {
        "measured": rows,
        "ratio_to_best": mine / rows[0]["measured_j_per_request"],
        "rank": 1 + sum(r["measured_j_per_request"] < mine for r in rows),
        "of": len(rows),
        "ratio_to_best_modelled_feasible": mine / min(r["measured_j_per_request"] for r in feasible),
        "rank_among_modelled_feasible": 1 + sum(r["measured_j_per_request"] < mine for r in feasible),
        "of_modelled_feasible": len(feasible),
        "goal": "ratio ≤ 1.05",
    }


def summary(results: dict[str, Any], log: logging.Logger) -> None:
    """Print the short summary."""
    val = results.get("validation")
    if val:
        for role in ("chosen", "baseline"):
            m = val[role]
            log.info(
                "%s: %s %s b%d: measured %.1f ± %.1f J/request, modelled %.1f (%+.1f%%), SLO met %s",
                role, m["engine"], m["mode"], m["batch_size"], m["measured_j_per_request"],
                m["measured_unc_j_per_request"], m["modelled_j_per_request"], 100 * m["model_error"],
                "not measured" if m["slo_attainment"] is None else f"{m['slo_attainment']['all']:.0%}",
            )  # fmt: skip
        log.info(
            "saving: measured %.1f%% [%.1f, %.1f], modelled on the sample %.1f%%",
            100 * val["measured_saving"], 100 * val["measured_saving_low"], 100 * val["measured_saving_high"],
            100 * val["modelled_saving_sample"],
        )  # fmt: skip
    acc = results.get("accuracy", {})
    if "ratio_to_best" in acc:
        log.info(
            "accuracy: the recommendation measures %.3f× the best measured (rank %d of %d; %.3f× among the "
            "modelled-feasible)", acc["ratio_to_best"], acc["rank"], acc["of"],
            acc["ratio_to_best_modelled_feasible"],
        )  # fmt: skip
    if results.get("skipped"):
        log.info("skipped (time): %s", "; ".join(results["skipped"].values()))


if __name__ == "__main__":
    sys.exit(main())

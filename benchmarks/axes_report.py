"""Markdown tables of an `axes_gpu.py` result (docs/results/axes.md is written from them).

Reads OUT/axes.json and prints: J/output token per decoding strategy × batch; speculative decoding's
measured ratios, its component costs (the isolated draft-step window beside the draft cost derived from the
α = 1 decodes) and the modelled ratio / crossover batch per α; MoE vs dense J/output token per batch and
the random router's spread. The model is recomputed here from the stored costs, so a result written before
the derived draft cost existed gets it too.

    PYTHONPATH=src python3 benchmarks/axes_report.py docs/results/2026-11-23-h100-axes/axes/axes.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from axes_gpu import ALPHAS, model_table, run_draft_costs  # noqa: E402

from llm_energy.modeling.speculative import SpecCosts  # noqa: E402


def _tok(row: dict[str, Any] | None, per: str = "returned") -> str:
    if row is None:
        return "—"
    if row["status"] != "ok":
        return row["status"]
    tokens = row["tokens_returned"]
    unc = math.hypot(row.get("prefill_unc_j", 0.0), row.get("decode_unc_j", 0.0)) / tokens
    value = row["j_per_output_token"]
    if per == "computed":
        computed = row["batch"] + row.get("decode_tokens_computed", tokens - row["batch"])
        value, unc = value * tokens / computed, unc * tokens / computed
    return f"{value:.3f} ± {unc:.3f}"


def decoding_table(rows: list[dict[str, Any]]) -> list[str]:
    series = ["greedy", "sample", "top-p", "beam4"]
    by = {(r["series"], r["batch"]): r for r in rows}
    batches = sorted({r["batch"] for r in rows})
    out = [
        "| batch | " + " | ".join(series) + " | beam4 per computed token |",
        "|---:|" + "---:|" * (len(series) + 1),
    ]
    for b in batches:
        cells = [_tok(by.get((s, b))) for s in series]
        out.append(f"| {b} | " + " | ".join(cells) + f" | {_tok(by.get(('beam4', b)), 'computed')} |")
    return out


def _costs(components: list[dict[str, Any]]) -> list[SpecCosts]:
    fields = SpecCosts.__dataclass_fields__
    return [SpecCosts(**{k: c[k] for k in fields}) for c in components if c.get("status") == "ok"]


def speculative_tables(spec: dict[str, Any], plain: dict[int, dict[str, Any]]) -> list[str]:
    rows = spec["rows"]
    series = {(r["series"], r["batch"]): r for r in rows if r["status"] == "ok"}
    out = [
        "Measured decode (prefill excluded), J per output token; α = 1 is the constructed pair:",
        "",
        "| batch | plain greedy | plain, zeroed norm | spec α = 1 | α = 1 / zeroed | α = 1 / greedy | time α = 1 / greedy |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in sorted({r["batch"] for r in rows} | set(plain)):
        g, z, a = plain.get(b), series.get(("plain-zeroed-norm", b)), series.get(("spec-agree", b))

        def per_tok(r: dict[str, Any] | None) -> str:
            return f"{r['decode_j_per_token']:.3f}" if r else "—"

        def ratio(x: dict[str, Any] | None, y: dict[str, Any] | None, key: str = "decode_j") -> str:
            return f"{x[key] / y[key]:.2f}" if x and y else "—"

        out.append(
            f"| {b} | {per_tok(g)} | {per_tok(z)} | {per_tok(a)} | {ratio(a, z)} | {ratio(a, g)} "
            f"| {ratio(a, g, 'decode_s')} |"
        )
    costs = _costs(spec["components"])
    derived = {c.batch_size: c for c in run_draft_costs(costs, rows)}
    out += [
        "",
        "Component costs per call (whole batch; GPU J including idle):",
        "",
        "| batch | plain step | verify γ+1 | draft step, own window | draft step, from the α = 1 decode |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in costs:
        d = derived.get(c.batch_size)
        dd = f"{d.draft_step_j:.2f} J, {d.draft_step_s * 1e3:.1f} ms" if d else "—"
        out.append(
            f"| {c.batch_size} | {c.plain_step_j:.2f} J, {c.plain_step_s * 1e3:.1f} ms | {c.verify_j:.2f} J, "
            f"{c.verify_s * 1e3:.1f} ms | {c.draft_step_j:.2f} J, {c.draft_step_s * 1e3:.1f} ms | {dd} |"
        )
    used = list(derived.values()) or costs  # no α = 1 decode gave a draft cost: the isolated windows'
    source = "from the α = 1 decodes" if derived else "from the isolated draft-step windows"
    table = model_table(used, spec["lookahead"])
    batches = [c.batch_size for c in used]
    out += [
        "",
        f"Modelled energy ratio to plain decoding (draft cost {source}), per-row advance (vLLM) /"
        " batch-minimum advance (our hf-spec engine); crossover = batch where the ratio reaches 1:",
        "",
        "| α | " + " | ".join(f"batch {b}" for b in batches) + " | crossover per-row | crossover batch-min |",
        "|---:|" + "---:|" * (len(batches) + 2),
    ]

    def cross(e: dict[str, Any]) -> str:
        return f"{e['crossover_batch']:.0f}" if e["crossover_batch"] else e["crossover_status"]

    limits = table.get("measured_alpha_limits", {})
    for a in (0.0, *ALPHAS, 1.0):
        if a in ALPHAS:
            e = next(x for x in table["per_alpha"] if x["alpha"] == a)
            cells = [
                f"{e['per-row']['ratio_by_batch'][str(b)]:.2f} / {e['batch-min']['ratio_by_batch'][str(b)]:.2f}"
                for b in batches
            ]
            out.append(
                f"| {a} | " + " | ".join(cells) + f" | {cross(e['per-row'])} | {cross(e['batch-min'])} |"
            )
        else:
            key = "alpha0" if a == 0.0 else "alpha1"
            cells = [f"{limits[str(b)][key]:.2f}" for b in batches]
            out.append(f"| {a:g} | " + " | ".join(cells) + " | | |")
    return out


def moe_tables(moe: dict[str, Any]) -> list[str]:
    rows = moe["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["batch"]): r for r in rows}
    batches = sorted({r["batch"] for r in rows})
    out = [
        "| batch | " + " | ".join(models) + " | MoE / dense of equal active |",
        "|---:|" + "---:|" * (len(models) + 1),
    ]
    for b in batches:
        moe_r, dense = by.get((models[0], b)), by.get(("olmo-1b", b))
        ratio = (
            f"{moe_r['j_per_output_token'] / dense['j_per_output_token']:.2f}"
            if moe_r and dense and moe_r["status"] == dense["status"] == "ok"
            else "—"
        )
        out.append(f"| {b} | " + " | ".join(_tok(by.get((m, b))) for m in models) + f" | {ratio} |")
    router = moe.get("router")
    if router:
        layers = router["layers"]
        cv = [x["cv"] for x in layers]
        touched = {
            b: sum(x["experts_touched_per_step"][b] for x in layers) / len(layers)
            for b in layers[0]["experts_touched_per_step"]
        }
        out += [
            "",
            f"Random router, {router['experts']} experts, top-{router['top_k']} (uniform share {router['uniform_share']:.4f}): "
            f"coefficient of variation of expert load over a prefill {min(cv):.2f}–{max(cv):.2f} across layers; "
            "experts touched per decode step (mean over layers): "
            + ", ".join(f"batch {b}: {v:.1f}" for b, v in touched.items()),
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("axes_json", type=Path)
    args = ap.parse_args(argv)
    d = json.loads(args.axes_json.read_text())
    lines: list[str] = []
    if d.get("decoding"):
        lines += [
            "## Decoding strategies (J per returned output token)",
            "",
            *decoding_table(d["decoding"]),
            "",
        ]
    if d.get("speculative"):
        plain = {
            r["batch"]: r
            for r in d.get("decoding", [])
            if r.get("series") == "greedy" and r["status"] == "ok"
        }
        lines += ["## Speculative decoding", "", *speculative_tables(d["speculative"], plain), ""]
    if d.get("moe"):
        lines += ["## MoE vs dense (J per output token)", "", *moe_tables(d["moe"]), ""]
    if d.get("skipped"):
        lines += ["Skipped by the time budget: " + "; ".join(d["skipped"])]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

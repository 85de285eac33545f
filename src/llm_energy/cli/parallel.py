"""`tp-compare`: data-parallel replicas vs one tensor-parallel group, from measured runs in the store.

Registered on the app when `llm_energy.cli` imports this module.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from llm_energy.cli.app import DbOption, JsonOption, _guard, _open_store, app, console, esc, fold


@app.command("tp-compare")
def tp_compare(
    model: Annotated[str, typer.Option(help="model as stored")],
    gpus: Annotated[int, typer.Option(help="GPUs both layouts use (the TP group's size)")],
    total_batch: Annotated[
        list[int], typer.Option("--total-batch", help="total requests in flight; repeat for several")
    ],
    input_len: Annotated[int, typer.Option(help="input tokens per request")] = 512,
    output_len: Annotated[int, typer.Option(help="output tokens per request")] = 128,
    engine: Annotated[str, typer.Option(help="engine as stored")] = "hf",
    mode: Annotated[str | None, typer.Option(help="engine mode (default: any)")] = None,
    dtype: Annotated[str | None, typer.Option(help="dtype as stored (default: any)")] = None,
    replica_tp: Annotated[int, typer.Option(help="TP size of each replica (1: one GPU each)")] = 1,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare N/k replicas of TP k with one TP-N group at the same total batch (measured runs)."""
    from llm_energy.validation.parallel import comparison_table

    def run() -> list[dict[str, Any]]:
        with _open_store(db) as store:
            runs = store.read_runs(status="ok")
        return comparison_table(
            runs,
            total_batches=total_batch,
            model=model,
            gpus=gpus,
            input_len=input_len,
            output_len=output_len,
            engine=engine,
            mode=mode,
            dtype=dtype,
            replica_tp=replica_tp,
        )

    rows = _guard(run)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table(title=esc(f"{model}: {gpus // replica_tp} replicas of TP{replica_tp} vs TP{gpus}"))
    for col in (
        "total batch",
        "replicas J",
        "TP J",
        "TP/replicas energy",
        "replicas s",
        "TP s",
        "TP/replicas time",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        if "missing" in r:
            table.add_row(str(r["total_batch"]), f"[yellow]{esc(r['missing'])}[/]", *[""] * 5)
            continue
        table.add_row(
            str(r["total_batch"]),
            f"{r['replicas_energy_j']:.1f}",
            f"{r['tp_energy_j']:.1f}",
            f"{r['energy_ratio_tp_over_replicas']:.3f}",
            f"{r['replicas_latency_s']:.3f}",
            f"{r['tp_latency_s']:.3f}",
            f"{r['latency_ratio_tp_over_replicas']:.3f}",
        )
    console.print(fold(table))

"""`llm-energy fit`: fit an energy profile from stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from llm_energy.cli.app import DbOption, _guard, _open_store, app, console


@app.command()
def fit(
    out: Annotated[Path, typer.Option("-o", "--out", help="profile file to write")],
    db: DbOption = None,
    model: Annotated[str | None, typer.Option(help="select runs of this model")] = None,
    engine: Annotated[str | None, typer.Option(help="select runs of this engine")] = None,
    mode: Annotated[str | None, typer.Option(help="select runs of this mode")] = None,
) -> None:
    """Fit an energy profile (calibration grid + parametric model) from stored runs."""
    from llm_energy.modeling.profile import fit_profile

    def run() -> Any:
        with _open_store(db) as store:
            prof = fit_profile(
                store.runs_frame(), model=model, engine=engine, mode=mode, source=str(store.path)
            )
        prof.save(out)
        return prof

    prof = _guard(run)
    q = prof.fit_quality.get("loo_energy", {})
    source = prof.fit_quality.get("energy_source", "gpu")
    console.print(
        escape(f"wrote {out}: {prof.describe()}")
        + (
            f"; physical model leave-one-out over all {q['points']:.0f} points: mean "
            f"{q['mean_abs_rel_error']:.1%}, max {q['max_abs_rel_error']:.1%}"
            if q
            else f"; physical model: {prof.fit_quality.get('physical', 'not fitted')}"
        )
        + ("" if source == "gpu" else f"; energy from the {escape(source)} (ESTIMATED, not measured)"),
        soft_wrap=True,
    )

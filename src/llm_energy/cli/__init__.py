"""The `llm-energy` command line: parse, call one library function, render with rich.

The typer app and the helpers every command shares live here; the commands live in `measure.py`
(measure, sweep, env, models, export), `model.py` (estimate, fit), `report.py` (report, plot) and
`serve.py` (replay).

Exit codes: 0 ok, 1 the run failed (e.g. out of memory), 2 bad input. `--json` writes only JSON
to stdout. Importing this module must not import torch: heavy work happens inside the commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from llm_energy.errors import ConfigError, LlmEnergyError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Measure, model and cut the energy of LLM inference."
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _fail(exc: LlmEnergyError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def _guard(fn: Callable[[], T]) -> T:
    """Run `fn`, turning our errors into one clear message and the right exit code."""
    try:
        return fn()
    except LlmEnergyError as exc:
        raise _fail(exc) from None


DbOption = Annotated[
    Path | None, typer.Option("--db", help="SQLite results database (default: user data dir)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="write only JSON to stdout")]


def _engine_options(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated `--option KEY=VALUE` (numbers, lists, objects and booleans as JSON, else text).

    Raises:
        ConfigError: an item without `=` or without a key.
    """
    import json

    opts: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option must be KEY=VALUE, got {item!r}")
        opts[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    return opts


def _open_store(db: Path | None) -> Any:
    from llm_energy.store import Store, default_db_path

    return Store(db or default_db_path())


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Entry point for `python -m llm_energy`."""
    app()


# Importing the command modules registers their commands on `app` (they import it from here).
from llm_energy.cli import compare as _compare  # noqa: E402, F401
from llm_energy.cli import measure as _measure  # noqa: E402, F401
from llm_energy.cli import model as _model  # noqa: E402, F401
from llm_energy.cli import parallel as _parallel  # noqa: E402, F401
from llm_energy.cli import report as _report  # noqa: E402, F401
from llm_energy.cli import serve as _serve  # noqa: E402, F401
from llm_energy.cli import validate as _validate  # noqa: E402, F401

"""The typer app and what every command shares: options, error handling, tables, the store.

Command modules import `app` from here and register their commands on it; `llm_energy.cli` imports
every command module, so `llm_energy.cli.app` holds them all once the package is imported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llm_energy.errors import ConfigError, LlmEnergyError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Measure, model and cut the energy of LLM inference."
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def esc(value: object) -> str:
    """Return `value` as text rich prints as typed (escaped markup).

    User input (a model, trace or file name) may hold `[...]`, which rich would otherwise read as
    markup: `[/x]` crashes it, `[bold]x[/bold]` is rendered.
    """
    return escape(str(value))


def fold(table: Table) -> Table:
    """Return `table` with every column folding what does not fit, never cutting it.

    At any width (80 columns included) an identifier or a number wraps onto the next line instead of
    being cut to "llama-3.1-7…".
    """
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


def say(message: str) -> None:
    """Print a library progress message to stderr as plain text (an `on_status` callback)."""
    err_console.print(message, markup=False, highlight=False)


def _fail(exc: LlmEnergyError) -> typer.Exit:
    """Print `exc` as one line (escaped: user input may hold rich markup) and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


OPTIONAL_MODULES: dict[str, str] = {
    "torch": "hf",
    "transformers": "hf",
    "psutil": "hf",
    "vllm": "vllm",
    "ray": "ray",
    "fastapi": "serving",
    "uvicorn": "serving",
}
"""Third-party modules an optional extra installs → that extra (`pip install 'llm-energy[hf]'`)."""


def _guard(fn: Callable[[], T]) -> T:
    """Run `fn`, turning our errors into one clear message and the right exit code.

    A missing optional dependency (torch without the `hf` extra, vLLM, Ray) is bad input too: one
    line naming the extra to install, exit 2.
    """
    try:
        return fn()
    except LlmEnergyError as exc:
        raise _fail(exc) from None
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in OPTIONAL_MODULES:
            raise
        missing = ConfigError(
            f"{top} is not installed here: pip install 'llm-energy[{OPTIONAL_MODULES[top]}]'"
        )
        raise _fail(missing) from None


DbOption = Annotated[
    Path | None, typer.Option("--db", help="SQLite results database (default: user data dir)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="write only JSON to stdout")]


def _engine_options(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated `--option KEY=VALUE`: JSON values (numbers, booleans, lists, objects), else text.

    `max_num_seqs=64` gives 64, `enforce=true` True, `name=test` the text "test". NaN and Infinity
    stay text (the engine's config then rejects them by name).

    Raises:
        ConfigError: an item without `=` or a key, a key given twice, or a value that starts like a
            JSON list, object or string but is not valid JSON.
    """
    import json

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:
        if not math.isfinite(number := float(text)):
            raise ConfigError(f"--option: {text} is not a finite number")
        return number

    opts: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--option must be KEY=VALUE, got {item!r}")
        if key in opts:
            raise ConfigError(f"--option {key} given twice")
        try:
            opts[key] = json.loads(value, parse_constant=no_constants, parse_float=finite)
        except ValueError:
            if value.lstrip()[:1] in ("[", "{", '"'):
                raise ConfigError(f"--option {key}: {value!r} is not valid JSON") from None
            opts[key] = value
    return opts


READING_COMMANDS = frozenset({"compare", "export", "fit", "plot", "report", "tp-compare"})
"""Commands that only read the results store: they never create one (`_open_store`)."""
_COMMAND: ContextVar[str | None] = ContextVar("llm_energy_command", default=None)
"""The command being run (set by the app callback), for `_open_store`'s default."""


def _open_store(db: Path | None, *, read_only: bool | None = None) -> Any:
    """Open the results store at `--db` (default: `default_db_path()`).

    Writers create it. Readers (`read_only`; when None, the commands in `READING_COMMANDS`) never
    create or change a file: a missing path, an empty file or a database that is not ours raises
    `NotAStore` (exit 2, one line naming the path).
    """
    from llm_energy.store import Store, default_db_path

    if read_only is None:
        read_only = _COMMAND.get() in READING_COMMANDS
    return Store(db or default_db_path(), read_only=read_only)


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress")] = False,
) -> None:
    _COMMAND.set(ctx.invoked_subcommand)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

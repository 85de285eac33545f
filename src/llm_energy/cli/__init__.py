"""The `llm-energy` command line: parse, call one library function, render with rich.

The typer app and the helpers every command shares live in `app.py`; each command lives in the
module of its name (`estimate.py`, `fit.py`, `recommend.py`, `replay.py`, ...), except `measure.py`
(measure, env, models, export), `report.py` (report, plot) and `parallel.py` (tp-compare).

Exit codes: 0 ok, 1 the run failed (e.g. out of memory), 2 bad input. `--json` writes only JSON
to stdout. Importing this module must not import torch: heavy work happens inside the commands.
"""

from __future__ import annotations

# Importing the command modules registers their commands on `app`.
from llm_energy.cli import calibrate as _calibrate  # noqa: F401
from llm_energy.cli import compare as _compare  # noqa: F401
from llm_energy.cli import estimate as _estimate  # noqa: F401
from llm_energy.cli import fit as _fit  # noqa: F401
from llm_energy.cli import measure as _measure  # noqa: F401
from llm_energy.cli import parallel as _parallel  # noqa: F401
from llm_energy.cli import recommend as _recommend  # noqa: F401
from llm_energy.cli import replay as _replay  # noqa: F401
from llm_energy.cli import report as _report  # noqa: F401
from llm_energy.cli import simulate as _simulate  # noqa: F401
from llm_energy.cli import sweep as _sweep  # noqa: F401
from llm_energy.cli import validate as _validate  # noqa: F401
from llm_energy.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point for `python -m llm_energy`."""
    app()

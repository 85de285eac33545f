"""No function body in the package runs over `MAX_BODY_LINES` lines (its signature and docstring aside).

A command's typer signature and a function's docstring may be long; the code under them may not. The
functions in `LONGER` are above the bound today: each may shrink, none may grow, and one that fits
must leave the list (the test says so), so the list only ever gets shorter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import llm_energy

PACKAGE = Path(llm_energy.__file__).resolve().parent
MAX_BODY_LINES = 80

LONGER: dict[tuple[str, str], int] = {
    ("recommend/search.py", "candidate"): 114,
    ("serving/loadgen.py", "run_load"): 92,
    ("serving/replay_run.py", "replay_servers"): 100,
}
"""(file, function) → its body's lines today: to be split, never to grow."""


def _body_lines() -> dict[tuple[str, str], int]:
    """Lines from the first statement after the docstring to the last, per (file, function)."""
    sizes: dict[tuple[str, str], int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            if body:
                key = (str(path.relative_to(PACKAGE)), node.name)
                sizes[key] = max(sizes.get(key, 0), (body[-1].end_lineno or 0) - body[0].lineno + 1)
    return sizes


def test_no_function_body_is_longer_than_the_bound():
    """Every function body fits `MAX_BODY_LINES`, or is listed in `LONGER` and has not grown."""
    sizes = _body_lines()
    too_long = [
        f"{file}:{name} has {lines} lines (at most {LONGER.get((file, name), MAX_BODY_LINES)})"
        for (file, name), lines in sorted(sizes.items())
        if lines > LONGER.get((file, name), MAX_BODY_LINES)
    ]
    assert too_long == [], "split these functions:\n" + "\n".join(too_long)
    fits = sorted(key for key in LONGER if sizes.get(key, 0) <= MAX_BODY_LINES)
    assert fits == [], f"these fit now: take them out of LONGER: {fits}"

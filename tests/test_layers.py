"""Layers: every import of the package runs downhill (the order in docs/extending.md), and none loops.

Each module of `src/llm_energy` is read with `ast` and every import in it is collected: module-level
and function-level alike (a deferred import is still a dependency, only a later one). Imports under
`if TYPE_CHECKING:` are collected too and held to the same order: an annotation that names a module
above is a dependency on it. Then:

* each top-level module or package has a layer (`LAYERS`); a module may import only from its own
  layer or below, and a module the table does not place fails the test until it is placed;
* engines never import meters (the runner opens the meter windows, so any meter measures any
  engine), the store imports records, errors, units, atomic and processes only, and nothing imports the CLI
  (or the package's face, `llm_energy/__init__.py`, from inside);
* no two modules import each other, directly or around a loop, and no two packages do;
* a `_private` name is never taken from another package (a helper others need is made public).

A failure names the importing file, the line, the module it imports and the rule it breaks.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import llm_energy

PACKAGE = Path(llm_energy.__file__).resolve().parent
ROOT = "llm_energy"

LAYERS: dict[str, int] = {
    # 1. the shared vocabulary and the leaves everything may use
    "records": 1,
    "errors": 1,
    "units": 1,
    "atomic": 1,
    "processes": 1,
    "compat": 1,
    "plugins": 1,
    # 2. devices, shapes, workloads, the store (and what a run records of its environment)
    "meters": 2,
    "architectures": 2,
    "workloads": 2,
    "store": 2,
    "carbon": 2,
    "env": 2,
    "parallel": 2,
    # 3. engines run batches; models and GPU settings
    "engines": 3,
    "modeling": 3,
    "control": 3,
    # 4. sweeps and serving drive engines and servers with their meters; the Python API over them
    "sweep": 4,
    "serving": 4,
    "api": 4,
    # 5. what is built on measured runs and models
    "validation": 5,
    "simulate": 5,
    "estimate": 5,
    # 6.-8. recommend, report, the command line
    "recommend": 6,
    "report": 7,
    "cli": 8,
    "__main__": 8,
}
"""Layer of each top-level module or package of `llm_energy` (1 is the ground)."""

FACE = 8
"""`llm_energy/__init__.py`, the public face: it re-exports the API, so only the CLI may import it."""

STORE_MAY_IMPORT = frozenset({"records", "errors", "units", "atomic", "processes", "store"})
"""The store holds rows: it knows the records and nothing that makes them."""

KNOWN: frozenset[tuple[str, str]] = frozenset()
"""(importer, imported) pairs tolerated for now, each to leave as it is fixed; an entry must still
occur and still break a rule (a stale entry fails). Empty: every rule holds."""


@dataclass(frozen=True)
class Import:
    """One import found in a module of the package."""

    importer: str
    imported: str
    path: Path
    line: int
    names: tuple[str, ...] = ()
    """The names a `from ... import` takes from the module."""

    def __str__(self) -> str:
        return f"{self.path.relative_to(PACKAGE.parent)}:{self.line}: {self.importer} imports {self.imported}"


def module_name(path: Path) -> str:
    """Return the dotted name of the module at `path` (a package's `__init__` is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, path: Path, node: ast.ImportFrom) -> str:
    """Return the absolute module an `ImportFrom` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(importer: str, path: Path) -> Iterator[Import]:
    """Yield every import of a package module in `path`, wherever it stands in the file.

    `from pkg import name` counts as importing `pkg.name` when that is a module, else `pkg`.
    """
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = {alias.name: () for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, path, node)
            targets = {}
            for alias in node.names:
                if f"{module}.{alias.name}" in MODULES:
                    targets[f"{module}.{alias.name}"] = ()
                else:
                    targets[module] = (*targets.get(module, ()), alias.name)
        else:
            continue
        for name, taken in targets.items():
            if name == ROOT or name.startswith(ROOT + "."):
                yield Import(importer, name, path, node.lineno, taken)


IMPORTS: list[Import] = [imp for name, path in MODULES.items() for imp in imports_of(name, path)]


def top(module: str) -> str:
    """Return the top-level module or package of `module` under `llm_energy` ('' for the face)."""
    return module.split(".")[1] if "." in module else ""


def layer(module: str) -> int:
    """Return the layer of `module` (the face's for `llm_energy` itself)."""
    return FACE if module == ROOT else LAYERS[top(module)]


def violation(imp: Import) -> str | None:
    """Return the rule `imp` breaks, or None."""
    src, dst = top(imp.importer), top(imp.imported)
    if imp.importer == ROOT or src in (dst, "__main__"):
        return None
    if imp.imported == ROOT:
        return "imports the package's face (llm_energy/__init__.py) from inside the package"
    if dst == "cli":
        return "imports the CLI: nothing imports cli"
    if src == "engines" and dst == "meters":
        return "engines never import meters: the runner opens meter windows around engine phases"
    if src == "store" and dst not in STORE_MAY_IMPORT:
        return "the store imports records, errors, units, atomic and processes only"
    if layer(imp.imported) > layer(imp.importer):
        return f"runs uphill: layer {layer(imp.importer)} ({src}) imports layer {layer(imp.imported)} ({dst})"
    return None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _describe(component: list[str], key: Callable[[str], str]) -> str:
    members = set(component)
    ties = sorted(
        str(i)
        for i in IMPORTS
        if key(i.importer) in members and key(i.imported) in members and key(i.importer) != key(i.imported)
    )
    return " <-> ".join(component) + "\n    " + "\n    ".join(ties)


def test_every_module_has_a_layer():
    """Every top-level module and package of llm_energy is placed in LAYERS (a new one must be placed)."""
    unplaced = sorted({top(m) for m in MODULES if m != ROOT} - set(LAYERS))
    assert unplaced == [], f"place these in tests/test_layers.py LAYERS: {unplaced}"


def test_no_private_name_crosses_a_package():
    """A `_private` name is taken only inside its own package (a helper others need is made public)."""
    taken = [
        f"{imp}: takes {', '.join(private)}"
        for imp in IMPORTS
        if top(imp.importer) != top(imp.imported)
        and (private := [n for n in imp.names if n.startswith("_") and not n.startswith("__")])
        and (imp.importer, imp.imported) not in KNOWN
    ]
    assert taken == [], "private names used outside their package:\n" + "\n".join(taken)


def _module_edges(*, known: bool = False) -> dict[str, set[str]]:
    """Module → modules it imports (without the KNOWN pairs unless `known`)."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        tolerated = not known and (imp.importer, imp.imported) in KNOWN
        if imp.imported in MODULES and imp.imported != imp.importer and not tolerated:
            edges.setdefault(imp.importer, set()).add(imp.imported)
    return edges


def _package_edges(*, known: bool = False) -> dict[str, set[str]]:
    """Top-level package → packages it imports (without the KNOWN pairs unless `known`)."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        src, dst = top(imp.importer), top(imp.imported)
        tolerated = not known and (imp.importer, imp.imported) in KNOWN
        if src and dst and src != dst and not tolerated:
            edges.setdefault(src, set()).add(dst)
    return edges


def test_imports_run_downhill():
    """No module imports a layer above its own, engines never import meters, the store only records."""
    broken = [
        f"{imp}: {why}"
        for imp in IMPORTS
        if (imp.importer, imp.imported) not in KNOWN and (why := violation(imp))
    ]
    assert broken == [], "imports against the layers:\n" + "\n".join(broken)


def test_no_module_imports_loop():
    """No two modules import each other, directly or around a loop (function-level imports count)."""
    loops = [_describe(c, lambda m: m) for c in _cycles(_module_edges())]
    assert loops == [], "modules importing each other:\n" + "\n".join(loops)


def test_no_package_imports_loop():
    """No two top-level packages import each other, directly or around a loop."""
    loops = [_describe(c, top) for c in _cycles(_package_edges())]
    assert loops == [], "packages importing each other:\n" + "\n".join(loops)


def test_known_exceptions_still_occur():
    """Each tolerated import in KNOWN still exists and still breaks a rule (fixed ones leave the list)."""
    in_module_loop = {m: i for i, c in enumerate(_cycles(_module_edges(known=True))) for m in c}
    in_package_loop = {p: i for i, c in enumerate(_cycles(_package_edges(known=True))) for p in c}

    def breaks(imp: Import) -> bool:
        a, b = imp.importer, imp.imported
        return bool(
            violation(imp)
            or [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
            or (a in in_module_loop and in_module_loop[a] == in_module_loop.get(b))
            or (top(a) in in_package_loop and in_package_loop[top(a)] == in_package_loop.get(top(b)))
        )

    still = {(imp.importer, imp.imported) for imp in IMPORTS if breaks(imp)}
    stale = sorted(KNOWN - still)
    assert stale == [], f"remove from KNOWN (gone, or no rule broken any more): {stale}"


@pytest.mark.parametrize(
    ("importer", "imported", "why"),
    [
        ("llm_energy.engines.x", "llm_energy.meters.base", "engines never import meters"),
        ("llm_energy.store.x", "llm_energy.serving", "the store imports records"),
        ("llm_energy.report.x", "llm_energy.cli", "nothing imports cli"),
        ("llm_energy.meters.x", "llm_energy.sweep.spec", "runs uphill"),
        ("llm_energy.parallel.x", "llm_energy", "the package's face"),
    ],
)
def test_a_violation_is_named(importer, imported, why):
    """The rules catch what they promise to (the checker is itself checked)."""
    found = violation(Import(importer, imported, PACKAGE / "x.py", 1))
    assert found is not None and why in found

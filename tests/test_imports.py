"""Import hygiene: a light top-level import, a consistent public API, and the layering of modules."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import llm_energy
from llm_energy.engines import ENGINES

PACKAGE = Path(llm_energy.__file__).resolve().parent
HEAVY = ("torch", "transformers", "vllm")


def test_importing_the_package_and_cli_loads_no_heavy_backend():
    """`import llm_energy, llm_energy.cli` imports none of torch, transformers or vllm."""
    code = (
        "import json, sys\n"
        "import llm_energy, llm_energy.cli\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_public_names_are_sorted_and_exist():
    """`llm_energy.__all__` is sorted, has no duplicates, and every name in it is defined."""
    names = llm_energy.__all__
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)
    missing = [name for name in names if not hasattr(llm_energy, name)]
    assert missing == []


@pytest.mark.parametrize("key", sorted(ENGINES))
def test_every_registered_engine_imports_under_its_name(key):
    """Each ENGINES entry imports, and its class has `name` equal to the key and a `Config`."""
    module_name, _, attr = ENGINES[key].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    assert cls.name == key
    assert isinstance(cls.Config, type)
    cls.Config()  # every field has a default


def _imported_modules(path: Path) -> set[str]:
    """Return every module `path` imports anywhere (functions included), relative ones resolved."""
    package = ".".join(("llm_energy", *path.relative_to(PACKAGE).with_suffix("").parts))
    # the package a relative import is resolved against
    package = package.removesuffix(".__init__") if path.name == "__init__.py" else package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _files(*parts: str) -> list[Path]:
    files: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    assert all(f.is_file() for f in files), files
    return files


def _imports_of(module: str, path: Path) -> list[str]:
    return sorted(m for m in _imported_modules(path) if m == module or m.startswith(module + "."))


@pytest.mark.parametrize(
    "path",
    _files("meters", "records.py", "errors.py", "units.py", "architectures", "store"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_lower_layers_never_import_engines_or_sweep(path):
    """Meters, records, errors, units, architectures and store know nothing of engines or sweeps."""
    assert _imports_of("llm_energy.engines", path) == []
    assert _imports_of("llm_energy.sweep", path) == []


@pytest.mark.parametrize("path", _files("engines"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engines_never_import_meters(path):
    """Engines expose phases and never import meters; only the simulated engine drives simulated devices."""
    imported = _imports_of("llm_energy.meters", path)
    if path.name == "simulated.py":
        assert imported, "the simulated engine drives SimulatedGpu: expected it to import it"
        assert all(m.startswith("llm_energy.meters.simulated") for m in imported), imported
    else:
        assert imported == []

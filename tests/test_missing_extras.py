"""Without an optional extra, a command that needs it says which extra to install, in one line, exit 2.

Each test runs the real CLI in a subprocess whose `sitecustomize` (on PYTHONPATH) makes importing the
blocked modules raise ModuleNotFoundError, as on a machine where `pip install llm-energy` ran without
`[hf]` or `[vllm]`.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer

from llm_energy.cli.app import OPTIONAL_MODULES, _guard
from llm_energy.engines import ENGINES

BLOCKER = """\
import os, sys

BLOCKED = set(filter(None, os.environ.get("LLM_ENERGY_TEST_BLOCK", "").split(",")))


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
"""

HF_HINT = "pip install 'llm-energy[hf]'"
VLLM_HINT = "pip install 'llm-energy[vllm]'"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture
def cli(tmp_path):
    """Run `llm-energy ARGS` with the given modules blocked; return (exit code, stdout + stderr)."""
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER)

    def run(args: list[str], blocked: str) -> tuple[int, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(tmp_path / "block"),
            "LLM_ENERGY_TEST_BLOCK": blocked,
            "LLM_ENERGY_DB": str(tmp_path / "runs.db"),
            "COLUMNS": "200",
            "HOME": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "-m", "llm_energy", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    return run


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output and "ModuleNotFoundError" not in output, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_the_blocker_really_blocks(cli, tmp_path):
    """The same interpreter imports torch without the block and fails with it (the tests are honest)."""

    def import_torch(blocked: str) -> subprocess.CompletedProcess[str]:
        env = {"PYTHONPATH": str(tmp_path / "block"), "LLM_ENERGY_TEST_BLOCK": blocked}
        return subprocess.run(
            [sys.executable, "-c", "import torch"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    pytest.importorskip("torch")
    assert import_torch("").returncode == 0
    blocked = import_torch("torch")
    assert blocked.returncode == 1 and "ModuleNotFoundError" in blocked.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["measure", "--model", "tiny", "--device", "cpu"],
        ["measure", "--model", "tiny"],  # device auto: resolving it needs torch too
        ["validate", "--model", "tiny", "--device", "cpu", "--sample", "2"],
    ],
)
def test_hf_without_torch_names_the_hf_extra(cli, args):
    code, output = cli(args, "torch,transformers")
    assert code == 2, output
    assert _one_error_line(output) == (
        f"error: engine 'hf' needs torch and transformers, not installed here: {HF_HINT}"
    )


def test_a_sweep_of_hf_points_without_torch_names_the_extra_before_opening_the_store(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "models: [tiny]\nengines: [{engine: hf}]\nbatch_sizes: [1]\ninput_lens: [8]\noutput_lens: [2]\n"
    )
    code, output = cli(["sweep", str(spec)], "torch,transformers")
    assert code == 2, output
    assert HF_HINT in _one_error_line(output)
    assert not (tmp_path / "runs.db").exists()
    code, output = cli(["sweep", str(spec), "--dry-run"], "torch,transformers")
    assert code == 0, output  # planning needs no torch


def test_vllm_without_vllm_names_the_vllm_extra(cli):
    code, output = cli(["measure", "--engine", "vllm", "--mode", "eager", "--model", "tiny"], "vllm")
    assert code == 2, output
    assert _one_error_line(output) == f"error: engine 'vllm' needs vllm, not installed here: {VLLM_HINT}"


def test_the_simulated_engine_needs_no_extra(cli):
    code, output = cli(["measure", "--engine", "simulated", "--model", "sim", "--idle-s", "0"], "torch,vllm")
    assert code == 0, output


def test_a_missing_module_met_later_still_names_its_extra(monkeypatch, capsys):
    """Where an import happens without the up-front check, `_guard` still turns it into one line."""
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ModuleNotFoundError
    with pytest.raises(typer.Exit) as info:
        _guard(lambda: importlib.import_module("vllm"))
    assert info.value.exit_code == 2
    assert f"vllm is not installed here: {VLLM_HINT}" in capsys.readouterr().err


def test_a_missing_module_of_ours_is_a_bug_not_an_extra():
    with pytest.raises(ModuleNotFoundError):
        _guard(lambda: importlib.import_module("llm_energy.no_such_module"))


def test_every_engine_names_an_extra_that_exists():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for name, cls in ENGINES.items():
        assert not cls.descriptor.requires or cls.descriptor.extra in extras, name
    assert set(OPTIONAL_MODULES.values()) <= set(extras)

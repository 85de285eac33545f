"""Import hygiene: a light top-level import and a consistent public API (layering: test_layers.py)."""

from __future__ import annotations

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
def test_every_registered_engine_declares_itself(key):
    """Each ENGINES entry is a class named by its key, with a `Config` and a descriptor that fit it."""
    cls = ENGINES[key]
    assert cls.name == key
    assert isinstance(cls.Config, type)
    config = cls.Config()  # every field has a default
    descriptor = cls.descriptor
    assert config.mode == descriptor.modes[0]  # the default mode is the Config's default
    for option in (descriptor.batch_option, descriptor.context_option):
        assert option is None or option in cls.Config.model_fields, option
    for mode, options in descriptor.request_set_options.items():
        assert mode in descriptor.modes and set(options) <= set(cls.Config.model_fields)
    assert set(descriptor.compile_s) <= set(descriptor.modes)
    assert set(descriptor.tp_modes) <= set(descriptor.modes)
    if descriptor.tp_builder:
        module, _, function = descriptor.tp_builder.partition(":")
        assert callable(getattr(importlib.import_module(module), function))

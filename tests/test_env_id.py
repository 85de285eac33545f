"""The environment id counts the packages that shape an engine's results, and only those."""

from __future__ import annotations

from llm_energy.engines import engine_descriptor
from llm_energy.env import env_fingerprint

BASE = {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "driver": "580", "power_limit_w": 700.0,
        "python": "3.12.3"}  # fmt: skip


def _env(vllm: str | None, torch: str = "2.11.0") -> dict[str, object]:
    return {**BASE, "versions": {"torch": torch, "transformers": "5.17.0", "vllm": vllm}}


def _id(env: dict[str, object], engine: str | None = None) -> str:
    return env_fingerprint(env, None if engine is None else engine_descriptor(engine).packages)


def test_vllm_installed_beside_does_not_change_hf_runs_id():
    """Seen on the lent H100: vLLM installed for one call made the next HF sweep re-measure every point."""
    assert _id(_env(None), "hf") == _id(_env("0.25.1"), "hf")
    assert _id(_env(None), "hf-paged") == _id(_env("0.25.1"), "hf-paged")


def test_vllm_version_still_matters_to_vllm_runs_and_torch_to_all():
    assert _id(_env("0.25.1"), "vllm") != _id(_env("0.32.0"), "vllm")
    assert _id(_env(None), "hf") != _id(_env(None, torch="2.13.0"), "hf")
    assert _id(_env(None)) != _id(_env("0.25.1"))  # engine unknown: all packages

"""The environment id counts the packages that shape an engine's results, and only those."""

from __future__ import annotations

from llm_energy.env import env_fingerprint

BASE = {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "driver": "580", "power_limit_w": 700.0,
        "python": "3.12.3"}  # fmt: skip


def _env(vllm: str | None, torch: str = "2.11.0") -> dict[str, object]:
    return {**BASE, "versions": {"torch": torch, "transformers": "5.17.0", "vllm": vllm}}


def test_vllm_installed_beside_does_not_change_hf_runs_id():
    """Seen on the lent H100: vLLM installed for one call made the next HF sweep re-measure every point."""
    assert env_fingerprint(_env(None), "hf") == env_fingerprint(_env("0.25.1"), "hf")
    assert env_fingerprint(_env(None), "hf-paged") == env_fingerprint(_env("0.25.1"), "hf-paged")


def test_vllm_version_still_matters_to_vllm_runs_and_torch_to_all():
    assert env_fingerprint(_env("0.25.1"), "vllm") != env_fingerprint(_env("0.32.0"), "vllm")
    assert env_fingerprint(_env(None), "hf") != env_fingerprint(_env(None, torch="2.13.0"), "hf")
    assert env_fingerprint(_env(None)) != env_fingerprint(_env("0.25.1"))  # engine unknown: all packages

"""The Zeus settings backend: here only its shape and a clean failure without a GPU (never a real change)."""

from __future__ import annotations

import pytest

from llm_energy.control import SettableGpu
from llm_energy.errors import GpuSettingsError

pytest.importorskip("zeus")


def test_zeus_settable_gpu_has_the_settable_gpu_surface():
    from llm_energy.control.zeus import ZeusSettableGpu

    members = [name for name in dir(SettableGpu) if not name.startswith("_")]
    assert members
    missing = [name for name in members if not hasattr(ZeusSettableGpu, name)]
    assert missing == []


def test_construction_without_a_gpu_fails_cleanly():
    from llm_energy.control.zeus import ZeusSettableGpu
    from llm_energy.meters.zeus import zeus_gpu_count

    if zeus_gpu_count() > 0:
        pytest.skip("a GPU is visible; this test is for machines without one")
    with pytest.raises(GpuSettingsError, match="no GPU management library"):
        ZeusSettableGpu(0)

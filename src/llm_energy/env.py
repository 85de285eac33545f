"""The environment a run was measured in: hardware, drivers, clocks, power limit, versions, host.

Versions come from package metadata, so collecting the environment imports no heavy package.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sys
from collections.abc import Sequence
from typing import Any

from llm_energy.meters.base import CpuDevice, GpuDevice

PACKAGES = ("llm-energy", "torch", "transformers", "zeus", "vllm", "nvidia-ml-py")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Return installed versions of `names` (None where not installed), without importing them."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or the platform string)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_env(
    gpus: Sequence[GpuDevice] = (), cpus: Sequence[CpuDevice] = (), notes: Sequence[str] = ()
) -> dict[str, Any]:
    """Return the environment record stored with every run."""
    gpu_infos = [gpu.info() for gpu in gpus]
    first = gpu_infos[0] if gpu_infos else {}
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu_count": len(gpu_infos),
        "gpu_name": first.get("name"),
        "driver": first.get("driver"),
        "power_limit_w": first.get("power_limit_w"),
        "sm_clock_mhz": first.get("sm_clock_mhz"),
        "mem_clock_mhz": first.get("mem_clock_mhz"),
        "gpus": gpu_infos,
        "cpu_meters": [f"{type(c).__name__}({c.source}: {', '.join(c.domains())})" for c in cpus],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": package_versions(),
        "notes": list(notes),
    }

"""The environment a run was measured in: hardware, drivers, clocks, power limit, versions, host.

Versions come from package metadata, so collecting the environment imports no heavy package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
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


FINGERPRINT_KEYS = ("gpu_name", "gpu_count", "driver", "power_limit_w", "python")
"""What makes two environments the same for resuming a sweep (plus engine package versions)."""

ENGINE_PACKAGES = ("torch", "transformers", "vllm")
"""Packages whose versions go into the id when the engine's own are not known."""


def env_fingerprint(env: dict[str, Any], packages: Sequence[str] | None = None) -> str:
    """Return a short stable id of the hardware and of the `packages` that shape the energy results.

    `packages` is the engine's own (`EngineDescriptor.packages`): vLLM's version matters to vLLM runs
    only, so a machine that also has vLLM installed gives HF runs the same id as one without, or a
    sweep would not resume there (seen on the lent H100). None (engine unknown): `ENGINE_PACKAGES`.
    """
    versions = env.get("versions", {})
    key = {k: env.get(k) for k in FINGERPRINT_KEYS}
    key["versions"] = {k: versions.get(k) for k in (ENGINE_PACKAGES if packages is None else packages)}
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def collect_env(
    gpus: Sequence[GpuDevice] = (),
    cpus: Sequence[CpuDevice] = (),
    notes: Sequence[str] = (),
    packages: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Return the environment record stored with every run (its `env_id` over the engine's `packages`)."""
    gpu_infos = [gpu.info() for gpu in gpus]
    first = gpu_infos[0] if gpu_infos else {}
    env: dict[str, Any] = {
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
    env["env_id"] = env_fingerprint(env, packages)
    return env

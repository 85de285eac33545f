"""Device names a point runs on (`auto`, `cpu`, `cuda`, `cuda:N`) and what they mean on this machine.

`check_device` is pure (a spec is validated anywhere); `resolve_device` asks torch which CUDA GPUs it
sees, so it imports torch, and only when a device other than `cpu` is asked for.
"""

from __future__ import annotations

import logging
import re

from llm_energy.errors import ConfigError

logger = logging.getLogger(__name__)

DEVICES = "auto, cpu, cuda or cuda:N"
"""The devices a point may name; `auto` is a CUDA GPU where torch sees one, else the CPU."""


def check_device(device: str) -> str:
    """Return `device` if it names a device a point can run on.

    Raises:
        ValueError: anything but auto, cpu, cuda or cuda:N (pydantic turns it into a named error).
    """
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", device):
        raise ValueError(f"device must be {DEVICES}, got {device!r}")
    return device


def cuda_index(device: str) -> int:
    """Return N of a `cuda:N` device string; 0 for `cuda` or `auto`."""
    return int(device.split(":")[1]) if device.startswith("cuda:") else 0


def resolve_device(device: str) -> str:
    """Return `cuda`, `cuda:N` or `cpu` for `device` (`auto`: CUDA where torch sees a GPU, else the CPU).

    Raises:
        ConfigError: an unknown device name, or a CUDA device torch does not see.
    """
    try:
        check_device(device)
    except ValueError:
        raise ConfigError(f"unknown device {device!r}; valid devices: {DEVICES}") from None
    if device == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        if count:
            return "cuda"
        logger.warning("no CUDA GPU: running on the CPU, where energy is only estimated")
        return "cpu"
    if not count:
        raise ConfigError(
            f"device {device!r} requested but torch sees no CUDA GPU (use --device cpu or auto)"
        )
    index = cuda_index(device)
    if index >= count:
        raise ConfigError(
            f"device {device!r} requested but torch sees {count} CUDA GPU(s): cuda:0..cuda:{count - 1}"
        )
    return device

"""Checks of a tensor-parallel size, made before any weight is loaded (pure Python except the GPU count).

transformers' TP plan for Llama-style models shards the q/k/v projections by output features
(whole heads per rank), the MLP's gate/up projections by rows and the lm_head by vocabulary rows, so
the query heads, the key/value heads, the MLP width and the vocabulary must each divide by the TP size.
A size that does not divide them would fail (or silently give uneven shards) deep inside the loader.
"""

from __future__ import annotations

from llm_energy.architectures.registry import Architecture
from llm_energy.errors import ConfigError


def check_tp_shape(arch: Architecture, tp_size: int) -> None:
    """Check that `arch` can be split over `tp_size` ranks.

    Raises:
        ConfigError: `tp_size` < 1, or it does not divide the attention heads, the key/value heads,
            the MLP width or the vocabulary; the message names the value and the count.
    """
    if isinstance(tp_size, bool) or not isinstance(tp_size, int) or tp_size < 1:
        raise ConfigError(f"tp_size must be an integer >= 1, got {tp_size!r}")
    if tp_size == 1:
        return
    counts = (
        ("attention heads", arch.num_heads),
        ("key/value heads", arch.num_kv_heads),
        ("MLP width (intermediate_size)", arch.intermediate_size),
        ("vocabulary", arch.vocab_size),
    )
    for what, count in counts:
        if count % tp_size:
            raise ConfigError(
                f"tp_size = {tp_size} does not divide {arch.name}'s {count} {what}: "
                "each rank must hold a whole share"
            )


def check_visible_gpus(tp_size: int, device: str, visible_gpus: int) -> int:
    """Check that ranks 0..tp_size-1 fit on the visible GPUs from `device`'s index on.

    Args:
        tp_size: Ranks of the group.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (rank r runs on ``cuda:N+r``).
        visible_gpus: GPUs this process sees (``torch.cuda.device_count()``).

    Returns:
        The first GPU index of the group (0 on the CPU).

    Raises:
        ConfigError: the group needs more GPUs than are visible; the message names the TP size.
    """
    if device == "cpu":
        return 0
    first = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    if first + tp_size > visible_gpus:
        where = f" from cuda:{first} on" if first else ""
        raise ConfigError(
            f"tp_size = {tp_size} needs {tp_size} GPUs{where}, but {visible_gpus} "
            f"{'is' if visible_gpus == 1 else 'are'} visible (CUDA_VISIBLE_DEVICES decides which)"
        )
    return first

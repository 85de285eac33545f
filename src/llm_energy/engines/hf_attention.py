"""Decode attention over a static KV cache that reads grouped K/V heads in place (`hf` compiled modes).

Why: with a static cache, transformers' `sdpa` attention (5.x) copies the K/V heads at every decode step.
The cache holds `max_cache_len` slots, so the causal mask cannot be dropped (slots past the filled length
must be hidden), and `sdpa_attention_forward` only passes ``enable_gqa=True`` to PyTorch's SDPA when there
is no mask. With a mask it calls `repeat_kv`, which materialises every layer's whole cache
``num_attention_heads / num_key_value_heads`` times, ``[B, H, max_cache_len, D]`` for K and for V, and
SDPA then reads those copies. For Llama-3.1-8B at batch 64 and 640 cache slots that is 4x the cache
(0.34 GB per layer for K and again for V) written and read back every step: 64 GB per decode step where
the weights plus one read of the cache are 21 GB. The eager mode's dynamic cache needs no mask at decode
(``q_len == 1``), so SDPA reads the grouped heads directly.

The fix, `grouped_sdpa_attention_forward`: a one-token decode query ``[B, H, 1, D]`` is folded to
``[B, H_kv, H / H_kv, D]`` -- the query heads that share a K/V head become rows of one query block -- and
attends to the cache ``[B, H_kv, L, D]`` as it is. The mask ``[B, 1, 1, L]`` broadcasts over the K/V heads
and the folded rows, so any SDPA backend (memory-efficient attention on CUDA, the CPU kernels) takes it.
Same arithmetic, no copy. Every other call (prefill, no GQA, no mask, a per-head mask, a position bias)
goes to transformers' own `sdpa_attention_forward` unchanged.

It is registered with transformers as attention implementation `GROUPED_SDPA`, with transformers' SDPA
mask builder as its mask function, so masks are identical to `sdpa`'s.
"""

from __future__ import annotations

from typing import Any

import torch

GROUPED_SDPA = "grouped_sdpa"
"""The attention implementation's name, as `model.config._attn_implementation` reports it."""


def grouped_sdpa_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention like transformers' `sdpa_attention_forward`, without copying K/V heads at masked decode.

    Args:
        module: The attention module (its ``num_key_value_groups`` gives ``H / H_kv``).
        query: ``[B, H, q, D]``.
        key: ``[B, H_kv, L, D]`` (the whole static cache at decode).
        value: ``[B, H_kv, L, D_v]``.
        attention_mask: Boolean or additive mask, ``[B or 1, 1, q, L]``, or None.
        dropout: Dropout probability (0 in inference).
        scaling: Softmax scale (default ``D ** -0.5``).
        is_causal: Passed on to the fallback.
        **kwargs: Passed on to the fallback.

    Returns:
        ``(output [B, q, H, D_v], None)``, as `sdpa_attention_forward` returns.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    batch, heads, q_len, head_dim = query.shape
    kv_heads = key.shape[1]
    if (
        groups == 1
        or q_len != 1
        or attention_mask is None
        or attention_mask.dim() != 4
        or attention_mask.shape[1] != 1
        or attention_mask.shape[2] != 1
        or kwargs.get("position_bias") is not None
        or kv_heads * groups != heads
    ):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    # Query head h = k * groups + r uses K/V head k (repeat_kv's order): fold r into the query rows. The
    # query is a view of [B, 1, H, D], so this reshape is a view too.
    folded = query.reshape(batch, kv_heads, groups, head_dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        folded, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=False
    )
    # [B, H_kv, groups, D_v] is [B, H, D_v] in head order: return [B, 1, H, D_v] like the fallback.
    return out.reshape(batch, 1, heads, out.shape[-1]), None


def register_grouped_sdpa() -> None:
    """Register `GROUPED_SDPA` with transformers' attention and mask interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GROUPED_SDPA, grouped_sdpa_attention_forward)
    AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)


def set_decode_attention(model: Any, grouped: bool) -> str | None:
    """Switch `model` between transformers' `sdpa` and `GROUPED_SDPA`; return the implementation in use.

    Only those two are swapped: a model on any other attention implementation (or without a
    transformers config) is left as it is.
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if grouped and current == "sdpa":
        register_grouped_sdpa()
        model.set_attn_implementation(GROUPED_SDPA)
    elif not grouped and current == GROUPED_SDPA:
        model.set_attn_implementation("sdpa")
    else:
        return current
    return str(model.config._attn_implementation)

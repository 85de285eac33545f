"""Parameter, FLOP and byte counts of dense decoder-only (Llama/Qwen2-style) transformers, from shape alone.

These are the analytic side of the energy model: FLOPs and bytes moved per phase, to set against measured
joules. Everything is pure Python over an `Architecture`, so counts are available without torch, and the tests
check `param_count` against a model built on torch's meta device.

Notation used in the docstrings: ``L`` layers, ``h`` hidden size, ``H`` query heads, ``K`` key/value heads,
``d`` head dim, ``f`` MLP intermediate size, ``V`` vocabulary size, ``b`` batch size. A multiply-add counts as
2 FLOPs. Element-wise work (norms, activations, rotary embedding, softmax, residual adds, biases) is left out
of the FLOP counts: it is below 1 % of the matmul FLOPs for these shapes.
"""

from __future__ import annotations

from llm_energy.architectures.registry import Architecture
from llm_energy.errors import ConfigError


def _has_qkv_bias(arch: Architecture) -> bool:
    # Qwen2 hard-codes bias on q/k/v (not o); Llama puts a bias on all four projections iff attention_bias.
    return arch.model_type == "qwen2" or bool(arch.config.get("attention_bias", False))


def _has_o_bias(arch: Architecture) -> bool:
    return arch.model_type != "qwen2" and bool(arch.config.get("attention_bias", False))


def _has_mlp_bias(arch: Architecture) -> bool:
    return arch.model_type != "qwen2" and bool(arch.config.get("mlp_bias", False))


def _layer_matmul_param_count(arch: Architecture) -> int:
    h, d, f = arch.hidden_size, arch.head_dim, arch.intermediate_size
    attention = h * (arch.num_heads + 2 * arch.num_kv_heads) * d + arch.num_heads * d * h
    mlp = 3 * h * f
    return attention + mlp


def _layer_bias_and_norm_param_count(arch: Architecture) -> int:
    h, d = arch.hidden_size, arch.head_dim
    count = 2 * h  # input and post-attention RMSNorm weights
    if _has_qkv_bias(arch):
        count += (arch.num_heads + 2 * arch.num_kv_heads) * d
    if _has_o_bias(arch):
        count += h
    if _has_mlp_bias(arch):
        count += 2 * arch.intermediate_size + h
    return count


def _lm_head_param_count(arch: Architecture) -> int:
    return arch.vocab_size * arch.hidden_size


def embedding_param_count(arch: Architecture) -> int:
    """Return the parameters of the input embedding and, when untied, of the lm_head.

    Formula: ``V·h`` if the embeddings are tied, else ``2·V·h``.

    Args:
        arch: The architecture.

    Returns:
        Parameter count.
    """
    embedding = arch.vocab_size * arch.hidden_size
    return embedding if arch.tie_embeddings else embedding + _lm_head_param_count(arch)


def non_embedding_param_count(arch: Architecture) -> int:
    """Return the parameters outside the embedding and lm_head: the decoder layers and the final norm.

    Formula: ``L·(h·(H + 2K)·d + H·d·h + 3·h·f + 2·h + biases) + h``, where the biases are
    ``(H + 2K)·d`` for q/k/v when ``attention_bias`` is set or the model is Qwen2, plus ``h`` for o_proj
    (Llama with ``attention_bias``) and ``2·f + h`` for the MLP (Llama with ``mlp_bias``).

    Args:
        arch: The architecture.

    Returns:
        Parameter count.
    """
    per_layer = _layer_matmul_param_count(arch) + _layer_bias_and_norm_param_count(arch)
    return arch.num_layers * per_layer + arch.hidden_size


def param_count(arch: Architecture) -> int:
    """Return the total parameter count, each tied matrix counted once.

    Formula: `embedding_param_count` + `non_embedding_param_count`. For llama-3.1-8b this is 8,030,261,248.

    Args:
        arch: The architecture.

    Returns:
        Parameter count, equal to the number of parameters of the built transformers model.
    """
    return embedding_param_count(arch) + non_embedding_param_count(arch)


def matmul_param_count(arch: Architecture) -> int:
    """Return the weights that every token multiplies through: all linear layers, lm_head included.

    The input embedding is a lookup, not a matmul, so it is excluded; the lm_head is included even when tied,
    because the tied matrix is still multiplied once per token. Biases and norm weights are excluded (they
    are adds and scales, not multiply-adds).

    Formula: ``L·(h·(H + 2K)·d + H·d·h + 3·h·f) + V·h``.

    Args:
        arch: The architecture.

    Returns:
        Parameter count.
    """
    return arch.num_layers * _layer_matmul_param_count(arch) + _lm_head_param_count(arch)


def _attention_flops_per_context_token(arch: Architecture) -> int:
    # Per layer and head: q·k scores (d multiply-adds per position) and the weighted sum of v (d more).
    return 4 * arch.num_layers * arch.num_heads * arch.head_dim


def _check_positive(label: str, value: int) -> None:
    if isinstance(value, bool) or value < 1:
        raise ConfigError(f"{label} must be a positive integer (>= 1), got {value!r}")


def flops_per_token(arch: Architecture, context_tokens: int) -> float:
    """Return the forward FLOPs for one token that attends to `context_tokens` positions (itself included).

    Formula: ``2·matmul_param_count + 4·L·H·d·context_tokens``. The first term is the linear layers, lm_head
    included; the second is attention scores ``q·kᵀ`` and the weighted sum of values, over all query heads
    (grouped-query attention shares K/V memory, not FLOPs).

    Args:
        arch: The architecture.
        context_tokens: Positions the token attends to, itself included; at least 1.

    Returns:
        FLOPs for one token, lm_head included.

    Raises:
        ConfigError: `context_tokens` is below 1.
    """
    _check_positive("context_tokens", context_tokens)
    return float(2 * matmul_param_count(arch) + _attention_flops_per_context_token(arch) * context_tokens)


def prefill_flops(
    arch: Architecture, batch_size: int, input_tokens: int, *, logits_for_all_tokens: bool = False
) -> float:
    """Return the forward FLOPs of a causal prefill of `input_tokens` tokens for each of `batch_size` prompts.

    Position ``i`` (0-based) attends to ``i + 1`` positions. Our engine computes the lm_head only for the
    last position (the one that yields the first output token); set `logits_for_all_tokens` for a plain
    ``model(input_ids)`` forward that computes logits everywhere.

    Formula, with ``n = input_tokens``, ``M = matmul_param_count`` and ``M_head = V·h``:
    ``b·(2·(M − M_head)·n + 2·M_head·m + 4·L·H·d·n·(n + 1)/2)`` where ``m`` is 1, or ``n`` with
    `logits_for_all_tokens`.

    Args:
        arch: The architecture.
        batch_size: Prompts in the batch; at least 1.
        input_tokens: Prompt length, in tokens; at least 1.
        logits_for_all_tokens: Count the lm_head for every position instead of the last only.

    Returns:
        FLOPs for the whole batch.

    Raises:
        ConfigError: `batch_size` or `input_tokens` is below 1.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("input_tokens", input_tokens)
    head = _lm_head_param_count(arch)
    body = matmul_param_count(arch) - head
    head_positions = input_tokens if logits_for_all_tokens else 1
    attention_positions = input_tokens * (input_tokens + 1) // 2
    per_prompt = (
        2 * body * input_tokens
        + 2 * head * head_positions
        + _attention_flops_per_context_token(arch) * attention_positions
    )
    return float(batch_size * per_prompt)


def decode_flops(arch: Architecture, batch_size: int, input_tokens: int, output_tokens: int) -> float:
    """Return the forward FLOPs of the decode steps that follow a prefill, for the whole batch.

    Prefill already produced the first output token, so decode runs ``output_tokens − 1`` steps; step ``j``
    (1-based) feeds one token per sequence that attends to ``input_tokens + j`` positions.

    Formula, with ``n = input_tokens``, ``s = output_tokens − 1`` and ``M = matmul_param_count``:
    ``b·(2·M·s + 4·L·H·d·(s·n + s·(s + 1)/2))``.

    Args:
        arch: The architecture.
        batch_size: Sequences in the batch; at least 1.
        input_tokens: Prompt length, in tokens; at least 1.
        output_tokens: Generated tokens per sequence, the prefill's token included; at least 1.

    Returns:
        FLOPs for the whole batch; 0.0 when `output_tokens` is 1.

    Raises:
        ConfigError: Any argument is below 1.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("input_tokens", input_tokens)
    _check_positive("output_tokens", output_tokens)
    steps = output_tokens - 1
    attention_positions = steps * input_tokens + steps * (steps + 1) // 2
    per_sequence = (
        2 * matmul_param_count(arch) * steps + _attention_flops_per_context_token(arch) * attention_positions
    )
    return float(batch_size * per_sequence)


def weight_bytes(arch: Architecture, bytes_per_param: float = 2.0) -> float:
    """Return the memory held by the weights, each tied matrix counted once.

    Formula: ``param_count · bytes_per_param``.

    Args:
        arch: The architecture.
        bytes_per_param: Bytes per parameter: 2.0 for bfloat16/float16, 4.0 for float32, 1.0 for 8-bit.

    Returns:
        Bytes.
    """
    return float(param_count(arch)) * bytes_per_param


def kv_cache_bytes(
    arch: Architecture, batch_size: int, context_tokens: int, bytes_per_value: float = 2.0
) -> float:
    """Return the memory of the key/value cache for `batch_size` sequences of `context_tokens` tokens.

    Formula: ``2 · L · K · d · context_tokens · b · bytes_per_value`` (one key and one value vector per
    layer, KV head and position).

    Args:
        arch: The architecture.
        batch_size: Sequences in the batch; at least 0.
        context_tokens: Cached positions per sequence, in tokens; at least 0.
        bytes_per_value: Bytes per cached element: 2.0 for bfloat16/float16.

    Returns:
        Bytes.

    Raises:
        ConfigError: `batch_size` or `context_tokens` is negative.
    """
    for label, value in (("batch_size", batch_size), ("context_tokens", context_tokens)):
        if value < 0:
            raise ConfigError(f"{label} must be >= 0, got {value!r}")
    values_per_token = 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim
    return float(values_per_token * context_tokens * batch_size) * bytes_per_value

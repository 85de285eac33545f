"""Parameter, FLOP and byte counts of decoder-only transformers, from shape alone.

These are the analytic side of the energy model: FLOPs and bytes moved per phase, to set against measured
joules. Everything is pure Python over an `Architecture`, so counts are available without torch, and the tests
check `param_count` against a model built on torch's meta device.

Supported model types: the dense ``llama``, ``qwen2`` and ``olmo`` (whose layer norms have no weights), and
the mixture-of-experts ``olmoe`` and ``mixtral``. A MoE layer replaces the MLP by ``E`` experts (each a gated
MLP of width ``f``) and a router (an ``E×h`` matrix); each token runs through the router and the top ``k``
of the ``E`` experts. Two counts therefore differ for MoE models:

* `param_count` (and `weight_bytes`): every expert, i.e. what the weights occupy in memory.
* `active_param_count`, `matmul_param_count` and every FLOP count: per token, only ``k`` experts (the router
  included), because that is the arithmetic done. Pass ``active=False`` to the FLOP functions for the
  naive "2 × total parameters" baseline.

For dense models active and total counts are the same.

Notation used in the docstrings: ``L`` layers, ``h`` hidden size, ``H`` query heads, ``K`` key/value heads,
``d`` head dim, ``f`` MLP (or per-expert) intermediate size, ``V`` vocabulary size, ``E`` experts per layer,
``k`` experts per token, ``b`` batch size. A multiply-add counts as 2 FLOPs. Element-wise work (norms,
activations, rotary embedding, softmax, residual adds, biases, the router's top-k) is left out of the FLOP
counts: it is below 1 % of the matmul FLOPs for these shapes.
"""

from __future__ import annotations

from llm_energy.architectures.registry import Architecture
from llm_energy.errors import ConfigError

_NORM_FREE_TYPES = frozenset({"olmo"})
"""Model types whose layer norms are parameter-free (OLMo's LayerNorm has no weight or bias)."""

_BIAS_FREE_TYPES = frozenset({"mixtral"})
"""Model types whose attention projections never have a bias, whatever the config says."""


def _has_qkv_bias(arch: Architecture) -> bool:
    # Qwen2 hard-codes bias on q/k/v (not o); Llama, OLMo and OLMoE put a bias on all four projections iff
    # attention_bias; Mixtral never has one.
    if arch.model_type in _BIAS_FREE_TYPES:
        return False
    return arch.model_type == "qwen2" or bool(arch.config.get("attention_bias", False))


def _has_o_bias(arch: Architecture) -> bool:
    if arch.model_type in _BIAS_FREE_TYPES:
        return False
    return arch.model_type != "qwen2" and bool(arch.config.get("attention_bias", False))


def _has_mlp_bias(arch: Architecture) -> bool:
    return arch.model_type == "llama" and bool(arch.config.get("mlp_bias", False))


def num_experts(arch: Architecture) -> int:
    """Return the experts per MoE layer (``num_experts`` or ``num_local_experts``), or 0 for a dense model.

    Args:
        arch: The architecture.

    Returns:
        ``E``, or 0 when the config names no experts.
    """
    for key in ("num_experts", "num_local_experts"):
        value = arch.config.get(key)
        if value is not None:
            return int(value)
    return 0


def experts_per_token(arch: Architecture) -> int:
    """Return how many experts each token runs through (``num_experts_per_tok``); 0 for a dense model.

    Args:
        arch: The architecture.

    Returns:
        ``k``, or 0 for a dense model.

    Raises:
        ConfigError: A MoE config without ``num_experts_per_tok``, or with ``k`` outside ``1..E``.
    """
    experts = num_experts(arch)
    if experts == 0:
        return 0
    value = arch.config.get("num_experts_per_tok")
    if value is None:
        raise ConfigError(f"architecture {arch.name!r}: a MoE config needs 'num_experts_per_tok'")
    k = int(value)
    if not 1 <= k <= experts:
        raise ConfigError(
            f"architecture {arch.name!r}: num_experts_per_tok = {k} must be in 1..{experts} (num_experts)"
        )
    return k


def _layer_attention_param_count(arch: Architecture) -> int:
    h, d = arch.hidden_size, arch.head_dim
    return h * (arch.num_heads + 2 * arch.num_kv_heads) * d + arch.num_heads * d * h


def _layer_mlp_matmul_param_count(arch: Architecture, *, active: bool) -> int:
    h, f = arch.hidden_size, arch.intermediate_size
    experts = num_experts(arch)
    if experts == 0:
        return 3 * h * f
    used = experts_per_token(arch) if active else experts
    return experts * h + used * 3 * h * f  # router, then the gated MLP of each expert used


def _layer_matmul_param_count(arch: Architecture, *, active: bool = False) -> int:
    return _layer_attention_param_count(arch) + _layer_mlp_matmul_param_count(arch, active=active)


def _final_norm_param_count(arch: Architecture) -> int:
    return 0 if arch.model_type in _NORM_FREE_TYPES else arch.hidden_size


def _layer_bias_and_norm_param_count(arch: Architecture) -> int:
    h, d = arch.hidden_size, arch.head_dim
    count = 0 if arch.model_type in _NORM_FREE_TYPES else 2 * h  # input and post-attention norm weights
    if arch.model_type == "olmoe":
        # OLMoE normalises q and k before rotary: RMSNorm weights over all q features and all k features.
        count += h + (h // arch.num_heads) * arch.num_kv_heads
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

    Every expert of a MoE layer is counted (see `active_param_count` for the per-token count).

    Formula: ``L·(h·(H + 2K)·d + H·d·h + mlp + norms + biases) + h``, where ``mlp`` is ``3·h·f`` for a dense
    model and ``E·h + E·3·h·f`` (router and experts) for a MoE model; ``norms`` is ``2·h`` (none for OLMo,
    whose norms have no weights, nor its final ``h``; plus ``h + (h/H)·K`` for OLMoE's q/k norms); the
    biases are ``(H + 2K)·d`` for q/k/v when ``attention_bias`` is set or the model is Qwen2, plus ``h`` for
    o_proj (``attention_bias``, not Qwen2) and ``2·f + h`` for the MLP (Llama with ``mlp_bias``).

    Args:
        arch: The architecture.

    Returns:
        Parameter count.
    """
    per_layer = _layer_matmul_param_count(arch, active=False) + _layer_bias_and_norm_param_count(arch)
    return arch.num_layers * per_layer + _final_norm_param_count(arch)


def param_count(arch: Architecture) -> int:
    """Return the total parameter count, each tied matrix counted once, every MoE expert included.

    Formula: `embedding_param_count` + `non_embedding_param_count`. For llama-3.1-8b this is 8,030,261,248;
    for mixtral-8x7b 46,702,792,704.

    Args:
        arch: The architecture.

    Returns:
        Parameter count, equal to the number of parameters of the built transformers model.
    """
    return embedding_param_count(arch) + non_embedding_param_count(arch)


def active_param_count(arch: Architecture) -> int:
    """Return the parameters one token uses: `param_count` with only ``k`` of the ``E`` experts per layer.

    This is the "active parameters" figure model cards quote (OLMoE-1B-7B: 1.3 B active of 6.9 B;
    Mixtral-8x7B: 12.9 B of 46.7 B). The input embedding counts once, as in `param_count`; the router
    counts whole (every token computes all ``E`` router logits). For a dense model it equals `param_count`.

    Formula: ``param_count − L·(E − k)·3·h·f``.

    Args:
        arch: The architecture.

    Returns:
        Parameter count.

    Raises:
        ConfigError: A MoE config without a valid ``num_experts_per_tok``.
    """
    unused = num_experts(arch) - experts_per_token(arch)
    return param_count(arch) - arch.num_layers * unused * 3 * arch.hidden_size * arch.intermediate_size


def matmul_param_count(arch: Architecture, *, active: bool = True) -> int:
    """Return the weights that every token multiplies through: all linear layers, lm_head included.

    The input embedding is a lookup, not a matmul, so it is excluded; the lm_head is included even when tied,
    because the tied matrix is still multiplied once per token. Biases and norm weights are excluded (they
    are adds and scales, not multiply-adds). For a MoE model the default counts the router and only the
    ``k`` experts a token is routed to, which is the arithmetic actually done; every FLOP count in this
    module is built on it.

    Formula: ``L·(h·(H + 2K)·d + H·d·h + mlp) + V·h`` with ``mlp = 3·h·f`` (dense) or ``E·h + k·3·h·f``
    (MoE; ``E·h + E·3·h·f`` with ``active=False``).

    Args:
        arch: The architecture.
        active: Count only the experts a token uses (True) or all of them (False: the naive
            "2 × total parameters" FLOPs baseline). No effect on dense models.

    Returns:
        Parameter count.
    """
    return arch.num_layers * _layer_matmul_param_count(arch, active=active) + _lm_head_param_count(arch)


def _attention_flops_per_context_token(arch: Architecture) -> int:
    # Per layer and head: q·k scores (d multiply-adds per position) and the weighted sum of v (d more).
    return 4 * arch.num_layers * arch.num_heads * arch.head_dim


def _check_positive(label: str, value: int) -> None:
    if isinstance(value, bool) or value < 1:
        raise ConfigError(f"{label} must be a positive integer (>= 1), got {value!r}")


def flops_per_token(arch: Architecture, context_tokens: int, *, active: bool = True) -> float:
    """Return the forward FLOPs for one token that attends to `context_tokens` positions (itself included).

    Formula: ``2·matmul_param_count + 4·L·H·d·context_tokens``. The first term is the linear layers, lm_head
    included (for MoE models the router and the ``k`` experts used, see `matmul_param_count`); the second is
    attention scores ``q·kᵀ`` and the weighted sum of values, over all query heads (grouped-query attention
    shares K/V memory, not FLOPs).

    Args:
        arch: The architecture.
        context_tokens: Positions the token attends to, itself included; at least 1.
        active: Count the experts a token uses (True), or every expert (False, the total-parameter baseline).

    Returns:
        FLOPs for one token, lm_head included.

    Raises:
        ConfigError: `context_tokens` is below 1.
    """
    _check_positive("context_tokens", context_tokens)
    matmul = matmul_param_count(arch, active=active)
    return float(2 * matmul + _attention_flops_per_context_token(arch) * context_tokens)


def prefill_flops(
    arch: Architecture,
    batch_size: int,
    input_tokens: int,
    *,
    logits_for_all_tokens: bool = False,
    active: bool = True,
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
        active: Count the MoE experts each token uses (True) or every expert (False).

    Returns:
        FLOPs for the whole batch.

    Raises:
        ConfigError: `batch_size` or `input_tokens` is below 1.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("input_tokens", input_tokens)
    head = _lm_head_param_count(arch)
    body = matmul_param_count(arch, active=active) - head
    head_positions = input_tokens if logits_for_all_tokens else 1
    attention_positions = input_tokens * (input_tokens + 1) // 2
    per_prompt = (
        2 * body * input_tokens
        + 2 * head * head_positions
        + _attention_flops_per_context_token(arch) * attention_positions
    )
    return float(batch_size * per_prompt)


def decode_flops(
    arch: Architecture, batch_size: int, input_tokens: int, output_tokens: int, *, active: bool = True
) -> float:
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
        active: Count the MoE experts each token uses (True) or every expert (False).

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
    matmul = matmul_param_count(arch, active=active)
    per_sequence = 2 * matmul * steps + _attention_flops_per_context_token(arch) * attention_positions
    return float(batch_size * per_sequence)


def weight_bytes(arch: Architecture, bytes_per_param: float = 2.0) -> float:
    """Return the memory held by the weights, each tied matrix counted once and every MoE expert included.

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

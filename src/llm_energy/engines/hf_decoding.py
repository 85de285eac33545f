"""The HF engine's token choice from logits: Gumbel-max sampling and beam candidates (pure tensor functions).

Both take every input as a tensor of static shape and read no random state, so the engine's compiled step can
hold them inside one graph (and a CUDA graph). The engine (`engines.hf`) draws the noise and keeps the beams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["beam_candidates", "sample_tokens"]


def sample_tokens(
    logits: torch.Tensor,
    uniform: torch.Tensor,
    *,
    decoding: str = "sample",
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Return one sampled token id per row with the Gumbel-max trick, from noise passed in.

    The token is ``argmax(s + G)`` with ``s = logits / temperature`` (tokens outside the top-k or the
    top-p nucleus set to -inf) and ``G = -log(-log U)``, which is distributed as ``softmax(s)``. All
    shapes are static and no random state is read, so the function compiles into one graph and can be
    captured in a CUDA graph.

    Args:
        logits: Next-token logits, shape ``[rows, vocab]``.
        uniform: Uniform noise in [0, 1), float32, same shape as `logits`.
        decoding: ``"sample"`` (whole vocabulary), ``"top-k"`` or ``"top-p"``.
        temperature: Divides the logits; > 0.
        top_k: Tokens kept by ``"top-k"`` (capped at the vocabulary size).
        top_p: Probability mass kept by ``"top-p"``: the most likely tokens whose preceding mass is below
            `top_p` (so at least one token).

    Returns:
        Token ids, shape ``[rows]``.
    """
    import torch

    scores = logits.float() / temperature
    if decoding == "top-k" and top_k < scores.shape[-1]:
        values, indices = scores.topk(top_k, dim=-1)
        scores = torch.full_like(scores, float("-inf")).scatter(-1, indices, values)
    elif decoding == "top-p" and top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        ordered = ordered.masked_fill(mass_before >= top_p, float("-inf"))
        scores = torch.empty_like(scores).scatter(-1, order, ordered)
    # Clamp: U = 0 would give -inf noise, and a row whose kept tokens all had it would pick token 0.
    gumbel = -torch.log(-torch.log(uniform.clamp(min=torch.finfo(torch.float32).tiny)))
    return (scores + gumbel).argmax(dim=-1)


def beam_candidates(
    logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the best `num_beams` one-token extensions of each request's beams.

    Args:
        logits: Next-token logits of every beam, shape ``[batch * beams, vocab]``, beams of a request
            adjacent.
        beam_scores: Summed log-probabilities of those beams, shape ``[batch, beams]`` (``beams`` is 1
            after prefill, when each request has a single sequence).
        num_beams: Extensions to keep per request.

    Returns:
        ``(scores, parents, tokens)``, each ``[batch, num_beams]`` and best first: the extended beams'
        summed log-probabilities, the index of the beam each extends, and the token it appends.
    """
    batch, beams = beam_scores.shape
    logprobs = logits.float().log_softmax(dim=-1)
    vocab = logprobs.shape[-1]
    candidates = (beam_scores[:, :, None] + logprobs.view(batch, beams, vocab)).view(batch, beams * vocab)
    scores, flat = candidates.topk(num_beams, dim=-1)
    return scores, flat // vocab, flat % vocab

"""A continuous-batching engine run, iteration by iteration, on the physical model (offline: all queued).

The homogeneous-batch estimate runs every request in a full batch of its own length. A continuous engine
(vLLM) does not: requests join as others finish, long prompts are prefilled in chunks beside running decodes,
and the batch drains at the end, when the last long outputs decode almost alone. This replays the scheduler
of vLLM's V1 engine closely enough for energy:

* each iteration is one forward pass with a token budget (`prefill_chunk_tokens`): every running request
  decodes one token, and what is left of the budget prefills waiting prompts (in order, chunked);
* a request is admitted while fewer than `max_num_seqs` run and the KV cache holds its prompt; its first
  output token comes with the end of its prefill, then one per iteration;
* an iteration costs the prefill pass of its chunk tokens plus the decode step of its running batch, minus
  one per-pass constant when it does both (one forward pass reads the weights once).

The energy is board energy (idle included), as the coefficients are fitted. For a few hundred requests the
loop runs a few thousand iterations of array work: milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_energy.modeling.physical import PhysicalModel, causal_pairs


@dataclass(frozen=True)
class ContinuousRun:
    """The replayed run: totals and per-request times (seconds from the start)."""

    energy_j: float
    duration_s: float
    prefill_j: float
    decode_j: float
    iterations: int
    ttft_s: np.ndarray
    e2e_s: np.ndarray


def run_continuous(
    model: PhysicalModel,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    max_num_seqs: int | None = None,
) -> ContinuousRun:
    """Replay an offline continuous-batching run of the requests (in order) on `model`."""
    lin = np.asarray(input_tokens, dtype=np.int64)
    lout = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
    n = lin.size
    cap = int(max_num_seqs or model.max_num_seqs or n)
    budget = int(model.prefill_chunk_tokens)
    prefilled = np.zeros(n, np.int64)  # prompt tokens processed
    generated = np.zeros(n, np.int64)
    admitted = np.zeros(n, bool)
    done = np.zeros(n, bool)
    ttft = np.full(n, np.nan)
    e2e = np.full(n, np.nan)
    t = energy = pre_j = dec_j = 0.0
    iterations = 0
    both = (
        min(model.prefill.time_s[0], model.decode.time_s[0]),
        min(model.prefill.energy_j[0], model.decode.energy_j[0]),
    )
    while not done.all():
        iterations += 1
        running = admitted & ~done
        decoding = running & (prefilled >= lin)
        left = budget - int(decoding.sum())
        # Admit waiting requests in order while the batch and the KV cache have room.
        kv_used = int((prefilled + generated)[running].sum())
        for k in np.flatnonzero(~admitted):
            if running.sum() >= cap or kv_used + lin[k] > model.kv_capacity_tokens:
                break
            admitted[k] = running[k] = True
            kv_used += int(lin[k])
        chunk = np.zeros(n, np.int64)
        for k in np.flatnonzero(running & (prefilled < lin)):
            if left <= 0:
                break
            chunk[k] = min(int(lin[k] - prefilled[k]), left)
            left -= int(chunk[k])
        step_s = step_j = 0.0
        tokens = int(chunk.sum())
        if tokens:
            pairs = float(causal_pairs(chunk, prefilled).sum())
            s, j = model.prefill_pass(tokens, pairs, 1.0)
            step_s, step_j = float(s), float(j)
            pre_j += float(j)
        if decoding.any():
            ctx = float((lin + generated)[decoding].sum())
            s, j = model.decode_step(int(decoding.sum()), ctx)
            step_s, step_j = step_s + float(s), step_j + float(j)
            dec_j += float(j)
        if tokens and decoding.any():
            step_s, step_j = step_s - both[0], step_j - both[1]
        t += step_s
        energy += step_j
        prefilled += chunk
        finished_prefill = (chunk > 0) & (prefilled >= lin)
        generated[finished_prefill] = 1
        ttft[finished_prefill] = t
        generated[decoding] += 1
        newly = running & ~done & (generated >= lout) & (prefilled >= lin)
        done |= newly
        e2e[newly] = t
    return ContinuousRun(energy, t, pre_j, dec_j, iterations, ttft, e2e)

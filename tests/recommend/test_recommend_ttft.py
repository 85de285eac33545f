"""TTFT of continuous-batching candidates: a request's own prefill beside the running decodes.

Checked against the H100 online measurement (docs/results/2026-11-23-h100-online-vllm/online/
online_gpu.json, docs/results/online-h100.md): vLLM cudagraphs, max_num_seqs 256, the Azure conv
trace's first minute at 3.2 / 7.6 / 19 req/s measured p90 TTFT 73 / 73 / 534 ms (100% of requests
within TTFT ≤ 2 s). The model (`llm_energy.recommend.load` on the profile's physical model) gives a mean
figure (44 / 44 / 46 ms on the whole trace's mean lengths); a p90 lies above a mean, so the model must
lie below the measurement:

- at 3.2 and 7.6 req/s (well below capacity, measured peak concurrency 26 and below B) within 3× of
  the p90: the spread of prompt lengths (p90 prefill over mean prefill) and a step's other prefill
  chunks are what separate a p90 from the mean, about 1.5× here;
- at 19 req/s the p90 is that of the trace's bursts (peak concurrency 286 > B = 256: requests queued
  for a slot; measured p90 TPOT 55 ms against 9–10 ms below saturation), which a mean-value model does
  not see: the model is 12× below it, asserted only to be below it and under the SLO.

The full-batch figure (prefill of B = 256 prompts at once, 7.1 s) is kept as `ttft_full_batch_s` and is
above every measured p90.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_energy.modeling.padded import padded_shapes
from llm_energy.modeling.physical import causal_pairs
from llm_energy.modeling.profile import load_profile
from llm_energy.recommend import Evaluator
from llm_energy.workloads import load_trace

VLLM = "h100-llama-3.1-8b-vllm"
HF_EAGER = "h100-llama-3.1-8b-hf-eager"
MEASURED_TTFT_P90_S = {3.2: 0.07324, 7.6: 0.07271, 19.0: 0.534}
SLO = {"ttft": 2.0, "tpot": 0.1}
TRACE_RATE = 5.53  # the Azure conv trace's own arrival rate


@pytest.fixture(scope="module")
def conv():
    trace = load_trace("azure-conv")
    profiles = {VLLM: load_profile(VLLM), HF_EAGER: load_profile(HF_EAGER)}
    ev = Evaluator(profiles, trace.input_tokens, trace.output_tokens)
    return ev, np.ones(ev.lin.size, bool)


def prefill_s(profile, batch, lin):
    """The physical model's prefill of `batch` prompts of `lin` tokens (passes at the engine's chunk size)."""
    m = profile.physical
    return m.prefill_pass(batch * lin, batch * causal_pairs(lin), m.passes(batch, lin))[0]


def step_s(profile, batch, lin, lout):
    """The physical model's decode step of `batch` sequences at their mean context (lin + lout / 2)."""
    return profile.physical.decode_step(batch, batch * (lin + lout / 2))[0]


def test_vllm_ttft_is_a_prefill_of_one_beside_the_running_decodes(conv):
    """TTFT = prefill of a batch of 1 at the mean input length + the decode step at concurrency n."""
    ev, everything = conv
    prof = ev.profiles[VLLM]
    lin, lout = float(ev.lin.mean()), float(ev.lout.mean())
    for rate in MEASURED_TTFT_P90_S:
        c = ev.candidate(VLLM, 256, None, everything, rate, SLO, None)
        assert c is not None and c.batching == "continuous" and c.concurrency is not None
        assert c.concurrency < 256 and c.keeps_up
        own = float(prefill_s(prof, 1, lin))
        assert c.tpot_s == pytest.approx(float(step_s(prof, c.concurrency, lin, lout)))
        assert c.ttft_s == pytest.approx(own + c.tpot_s, rel=1e-9)
        assert c.e2e_s == pytest.approx(c.ttft_s + (lout - 1) * c.tpot_s, rel=1e-9)
        assert c.ttft_full_batch_s == pytest.approx(float(prefill_s(prof, 256, lin)))


def test_vllm_ttft_is_under_the_slo_and_near_the_measured_p90(conv):
    """Below 2 s and below the measured p90 at all three rates; within 3× of it below saturation."""
    ev, everything = conv
    for rate, p90 in MEASURED_TTFT_P90_S.items():
        c = ev.candidate(VLLM, 256, None, everything, rate, SLO, None)
        assert c is not None and c.ttft_full_batch_s is not None
        assert c.ttft_s < 2.0 and c.tpot_s < 0.1 and c.meets_slo, (rate, c.ttft_s)
        assert c.ttft_s < p90 < c.ttft_full_batch_s, (rate, c.ttft_s, p90)
        if rate < 19.0:
            assert p90 / c.ttft_s < 3.0, (rate, c.ttft_s, p90)


def test_b128_is_feasible_at_the_traces_rate(conv):
    """At the trace's 5.53 req/s max_num_seqs 128 (the least energy offline) meets ttft=2s, tpot=100ms."""
    ev, everything = conv
    c = ev.candidate(VLLM, 128, None, everything, TRACE_RATE, SLO, None)
    assert c is not None and c.feasible and c.meets_slo and c.keeps_up
    assert c.ttft_s < 0.1 < 2.0 < c.ttft_full_batch_s  # the full-batch figure alone would exclude it


def test_a_rate_that_fills_b_waits_for_a_slot(conv):
    """Past capacity a request queues: the full-batch TTFT (a lower bound) and no keeping up."""
    ev, everything = conv
    c = ev.candidate(VLLM, 16, None, everything, 1e3, SLO, None)
    assert c is not None and c.concurrency == 16 and not c.keeps_up
    assert c.ttft_s == c.ttft_full_batch_s and not c.feasible


def test_static_hf_eager_ttft_is_its_padded_batches_prefill(conv):
    """HF eager keeps its TTFT: the mean prefill of the padded (partial) batches of k requests in order.

    B = 64: the largest batch the HF profile was calibrated at (1, 8, 64), inside the KV limit at the
    trace's mean shape (412,494 tokens / (1,155 + 211) = 301). k = 45: the least fixed point of Little's
    law n = 5.53 req/s × E2E(n), E2E of an unpadded batch of n at the mean lengths (prefill + 210 decode
    steps), solved here by iterating from n = 1 (the map grows with n, so the iteration climbs to the
    least fixed point). Padding to each batch's longest prompt puts the TTFT above the 2 s SLO."""
    ev, everything = conv
    prof = ev.profiles[HF_EAGER]
    c = ev.candidate(HF_EAGER, None, None, everything, TRACE_RATE, SLO, None)
    assert c is not None and c.batching == "static" and c.concurrency is not None
    lin, lout = float(ev.lin.mean()), float(ev.lout.mean())
    n = 1.0
    for _ in range(200):
        n = max(1.0, TRACE_RATE * float(prefill_s(prof, n, lin) + (lout - 1) * step_s(prof, n, lin, lout)))
    assert (c.batch_size, c.concurrency) == (64, round(n)) and round(n) == 45
    rows, pin, _ = padded_shapes(ev.lin, ev.lout, round(n))
    assert c.ttft_s == pytest.approx(float((rows * prefill_s(prof, rows, pin)).sum() / rows.sum()), rel=1e-9)
    assert c.ttft_s > SLO["ttft"] and not c.meets_slo  # the static baseline fails the SLO here

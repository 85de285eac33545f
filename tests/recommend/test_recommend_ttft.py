"""TTFT of continuous-batching candidates: a request's own prefill beside the running decodes.

Checked against the H100 online measurement (docs/results/2026-11-23-h100-online-vllm/online/
online_gpu.json, docs/results/online-h100.md): vLLM cudagraphs, max_num_seqs 256, the Azure conv
trace's first minute at 3.2 / 7.6 / 19 req/s measured p90 TTFT 73 / 73 / 534 ms (100% of requests
within TTFT ≤ 2 s). The model (`llm_energy.recommend.load`) gives a mean figure (47 / 48 / 50 ms on
the whole trace's mean lengths); a p90 lies above a mean, so the model must lie below the measurement:

- at 3.2 and 7.6 req/s (well below capacity, measured peak concurrency 26 and below B) within 3× of
  the p90: the spread of prompt lengths (p90 prefill over mean prefill) and a step's other prefill
  chunks are what separate a p90 from the mean, about 1.5× here;
- at 19 req/s the p90 is that of the trace's bursts (peak concurrency 286 > B = 256: requests queued
  for a slot; measured p90 TPOT 55 ms against 9–10 ms below saturation), which a mean-value model does
  not see: the model is 10–11× below it, asserted only to be below it and under the SLO.

The full-batch figure the recommender used before (prefill of B prompts at once, 3.4 s) is kept as
`ttft_full_batch_s` and is above every measured p90.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_energy.modeling.padded import padded_batches
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


def test_vllm_ttft_is_a_prefill_of_one_beside_the_running_decodes(conv):
    """TTFT = prefill of a batch of 1 at the mean input length + the decode step at concurrency n."""
    ev, everything = conv
    grid = ev.profiles[VLLM].grid
    lin, lout = float(ev.lin.mean()), float(ev.lout.mean())
    for rate in MEASURED_TTFT_P90_S:
        c = ev.candidate(VLLM, 256, None, everything, rate, SLO, None)
        assert c is not None and c.batching == "continuous" and c.concurrency is not None
        assert c.concurrency < 256 and c.keeps_up
        own = float(grid.prefill_batch_s(1, lin))
        assert c.tpot_s == pytest.approx(float(grid.decode_step_s(c.concurrency, lin, lout)))
        assert c.ttft_s == pytest.approx(own + c.tpot_s, rel=1e-9)
        assert c.e2e_s == pytest.approx(c.ttft_s + (lout - 1) * c.tpot_s, rel=1e-9)
        assert c.ttft_full_batch_s == pytest.approx(float(grid.prefill_batch_s(256, lin)))


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
    """HF eager keeps its TTFT: the mean prefill of the padded (partial) batches of k requests in order,
    the same figures as before the continuous-batching TTFT (2.457 s at B = 64, k = 41)."""
    ev, everything = conv
    c = ev.candidate(HF_EAGER, None, None, everything, TRACE_RATE, SLO, None)
    assert c is not None and c.batching == "static" and c.concurrency is not None
    k = int(c.concurrency)
    pad = padded_batches(ev.profiles[HF_EAGER].grid, ev.lin, ev.lout, k)
    assert c.ttft_s == pytest.approx(float(pad.per_request(pad.prefill_s).mean()), rel=1e-9)
    assert (c.batch_size, k) == (64, 41)
    assert c.ttft_s == pytest.approx(2.4573042378065364, rel=1e-9)
    assert not c.meets_slo  # TTFT above 2 s: the static baseline still fails the SLO here

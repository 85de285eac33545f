"""Static-batching engines (HF) are modelled per padded batch in trace order, as the validation estimates
them (`physical-padded`); continuous engines (vLLM) keep the per-request model. Both are the profile's
physical model (`estimate`'s default).

Profiles: the bundled H100 ones (HF eager: static; vLLM cudagraphs: continuous).
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_energy.control.dvfs import phase_factors
from llm_energy.estimate import estimate_trace
from llm_energy.modeling.padded import padded_shapes
from llm_energy.modeling.physical import causal_pairs
from llm_energy.modeling.profile import load_profile
from llm_energy.recommend import Evaluator, recommend
from llm_energy.recommend.classes import SIZE_NAMES, plan_per_class
from llm_energy.recommend.search import pads_batches
from llm_energy.recommend.validation import SampleSpec, validate_recommendation
from llm_energy.validation.models import compare, physical_padded_j
from llm_energy.validation.offline import (
    ValidationRun,
    sample_requests,
    static_batches,
)
from llm_energy.workloads import load_trace

HF, VLLM = "h100-llama-3.1-8b-hf-eager", "h100-llama-3.1-8b-vllm"
FILLS = 1e4
"""Requests/s that fill every batch (one replica): the load model's figures are the full-batch ones."""


@pytest.fixture(scope="module")
def profiles():
    return {HF: load_profile(HF), VLLM: load_profile(VLLM)}


@pytest.fixture(scope="module")
def mixed():
    """Mixed lengths (input 100–2000, output 10–128: about the calibrated ones); 50 requests: a tail."""
    rng = np.random.default_rng(7)
    return rng.integers(100, 2000, 50), rng.integers(10, 128, 50)


def static_run(profile, lin, lout, batch):
    """A (not measured) static validation run of these requests at this batch."""
    return ValidationRun(
        trace="synthetic",
        model=profile.model,
        engine=profile.engine,
        mode=profile.mode,
        batch_size=batch,
        batching="static",
        input_tokens=[int(x) for x in lin],
        output_tokens=[int(x) for x in lout],
        energy_j=1.0,
        uncertainty_j=0.0,
        duration_s=1.0,
        idle_power_w=0.0,
        eligible_requests=len(lin),
        window_energy_j=1.0,
    )


def test_which_profiles_pad(profiles):
    assert pads_batches(profiles[HF]) and not pads_batches(profiles[VLLM])


@pytest.mark.parametrize("batch", [8, 16, 64])
def test_static_candidate_is_the_validations_padded_estimate_and_above_the_unpadded(profiles, mixed, batch):
    """HF eager: the recommender's J/request of mixed-length requests = the validation's physical-padded
    estimate of the same requests at the same batch, and above the per-request (unpadded) estimate."""
    lin, lout = mixed
    prof = profiles[HF]
    ev = Evaluator(profiles, lin, lout)
    c = ev.candidate(HF, batch, None, np.ones(lin.size, bool), FILLS, {}, None)
    assert c is not None and c.batching == "static"
    run = static_run(prof, lin, lout, batch)
    padded_j, padded_unc_j = physical_padded_j(prof, run)
    by_compare = next(m for m in compare(run, prof) if m.method == "physical-padded")
    assert by_compare.estimate_j == pytest.approx(padded_j)
    assert c.energy_per_request_j == pytest.approx(padded_j / lin.size, rel=1e-12)
    assert c.uncertainty_per_request_j == pytest.approx(padded_unc_j / lin.size, rel=1e-12)
    unpadded = estimate_trace(lin, lout, prof, batch_size=batch).request_mean_j
    assert c.energy_per_request_j > 1.1 * unpadded


def prefill_s(profile, batch, lin):
    """The physical model's prefill of `batch` prompts of `lin` tokens: its forward passes over the batch's
    tokens and causal (query, key) pairs, at the engine's chunk size."""
    m = profile.physical
    return m.prefill_pass(batch * lin, batch * causal_pairs(lin), m.passes(batch, lin))[0]


def step_s(profile, batch, lin, lout):
    """The physical model's decode step of `batch` sequences at their mean context (lin + lout / 2)."""
    return profile.physical.decode_step(batch, batch * (lin + lout / 2))[0]


def test_static_latency_is_that_of_the_padded_batches(profiles, mixed):
    """TTFT = the request's padded batch's prefill, TPOT = its decode step, E2E = the whole batch (means
    over requests); capacity = requests / the batches' total time; a lower clock scales them by phase."""
    lin, lout = mixed
    prof = profiles[HF]
    everything = np.ones(lin.size, bool)
    ev = Evaluator(profiles, lin, lout)
    c = ev.candidate(HF, 16, None, everything, FILLS, {"ttft": 10.0}, None)
    assert c is not None
    rows, pin, pout = padded_shapes(lin, lout, 16)
    assert list(rows) == [16, 16, 16, 2]
    pre, step = prefill_s(prof, rows, pin), step_s(prof, rows, pin, pout)
    batch = pre + (pout - 1) * step  # every row returns at its batch's end
    w = rows / lin.size
    assert c.ttft_s == pytest.approx(float((w * pre).sum()))
    assert c.tpot_s == pytest.approx(float((w * step).sum()))
    assert c.e2e_s == pytest.approx(float((w * batch).sum()))
    assert c.throughput_per_s == pytest.approx(lin.size / float(batch.sum()))
    # Every row waits for its batch's longest prompt: longer than a batch at the mean input.
    assert c.ttft_s > float(prefill_s(prof, 16, lin.mean()))
    slow = ev.candidate(HF, 16, 1400.0, everything, FILLS, {}, None)
    assert slow is not None
    f = phase_factors(1400, ev.max_clock(HF))
    assert slow.ttft_s == pytest.approx(c.ttft_s * f.prefill_time)
    assert slow.tpot_s == pytest.approx(c.tpot_s * f.decode_time)


def test_uniform_full_batches_pad_nothing(profiles):
    """Equal lengths in full batches: the padded and the per-request model agree, latency included."""
    lin, lout = np.full(64, 512), np.full(64, 100)
    prof = profiles[HF]
    c = Evaluator(profiles, lin, lout).candidate(HF, 16, None, np.ones(64, bool), FILLS, {}, None)
    assert c is not None
    assert c.energy_per_request_j == pytest.approx(
        estimate_trace(lin, lout, prof, batch_size=16).request_mean_j
    )
    assert c.ttft_s == pytest.approx(float(prefill_s(prof, 16, 512)))
    assert c.tpot_s == pytest.approx(float(step_s(prof, 16, 512, 100)))


def test_continuous_candidate_is_unchanged(profiles, mixed):
    """vLLM: the per-request estimate (`estimate`'s) and the mean-shape latencies in the full-batch
    figures (the load-aware ones, at 1 req/s here, are `tests/recommend/test_recommend_load.py`'s)."""
    lin, lout = mixed
    prof = profiles[VLLM]
    c = Evaluator(profiles, lin, lout).candidate(VLLM, 16, None, np.ones(lin.size, bool), 1.0, {}, None)
    assert c is not None and c.batching == "continuous"
    assert c.energy_full_batch_j == pytest.approx(
        estimate_trace(lin, lout, prof, batch_size=16).request_mean_j, rel=1e-12
    )
    ttft = float(prefill_s(prof, 16, lin.mean()))
    tpot = float(step_s(prof, 16, lin.mean(), lout.mean()))
    assert (c.ttft_full_batch_s, c.tpot_full_batch_s) == (pytest.approx(ttft), pytest.approx(tpot))
    assert c.e2e_full_batch_s == pytest.approx(ttft + (lout.mean() - 1) * tpot)
    assert c.throughput_per_s == pytest.approx(16 / c.e2e_full_batch_s)


def test_padded_shapes_are_the_static_runs_batches(mixed):
    lin, lout = mixed
    rows, pin, pout = padded_shapes(lin, lout, 16)
    batches = static_batches(lin, lout, 16)
    assert [(b.batch_size, b.input_tokens, b.output_tokens) for b in batches] == list(
        zip(rows.astype(int).tolist(), pin.astype(int).tolist(), pout.astype(int).tolist(), strict=True)
    )


def test_search_pads_the_hf_baseline_and_notes_it(profiles):
    """The whole-trace search: the HF-eager baseline is padded (costs more than the unpadded model), the
    vLLM choice is not; a note says so."""
    rng = np.random.default_rng(11)
    lin, lout = rng.integers(100, 2000, 400), rng.integers(10, 128, 400)
    rec = recommend(profiles, lin, lout, rate_per_s=1.0, slo_s={"tpot": 0.1})
    base = rec.baseline
    assert base.profile == HF and base.batching == "static"
    unpadded = estimate_trace(lin, lout, profiles[HF], batch_size=base.batch_size).request_mean_j
    assert base.energy_per_request_j > unpadded
    assert rec.choice is not None and rec.choice.batching == "continuous"
    assert any("static batching" in n and "padded" in n for n in rec.notes)


def test_class_plan_pads_per_class_pool_and_the_single_pool_across_classes(profiles):
    """Per class: a class's static choice pads batches of its own requests; the best single configuration
    serves all classes from one pool, its per-class energies adding up to the whole trace's padded one."""
    rng = np.random.default_rng(5)
    lin, lout = rng.integers(100, 2000, 600), rng.integers(10, 128, 600)
    hf = {HF: profiles[HF]}
    # Full batches: at 0.05 req/s the load model's idle time would swamp the padding compared here.
    plan = plan_per_class(hf, lin, lout, rate_per_s=0.05, slo_s={}, load_aware=False)
    ev = Evaluator(hf, lin, lout, load_aware=False)
    everything = np.ones(lin.size, bool)
    single = next(c.single for c in plan.classes if c.single is not None)
    whole = ev.candidate(HF, single.batch_size, None, everything, 0.05, {}, None)
    assert whole is not None and plan.single_j is not None
    assert plan.single_j == pytest.approx(whole.energy_per_request_j * lin.size)
    for c in plan.classes:
        ch = c.recommendation.choice
        assert ch is not None and ch.batching == "static"
        i, o = (SIZE_NAMES.index(part.split("-")[0]) for part in c.name.split("/"))
        mask = (plan.split.input_class == i) & (plan.split.output_class == o)
        own = physical_padded_j(hf[HF], static_run(hf[HF], lin[mask], lout[mask], ch.batch_size))[0]
        assert ch.energy_per_request_j == pytest.approx(own / mask.sum())
    # Classes of similar lengths pad less in their own pools than mixed in one.
    assert plan.plan_j is not None and plan.plan_j < plan.single_j


def test_validation_models_a_static_run_as_its_padded_estimate(profiles):
    """`recommend --validate`: a static run's modelled J/request is its padded estimate (no GPU: a stub
    measurement of the drawn sample)."""
    trace = load_trace("azure-conv")
    rec = recommend(profiles, trace.input_tokens, trace.output_tokens, rate_per_s=0.5, slo_s={})
    spec = SampleSpec("azure-conv", 120, seed=3, max_input_tokens=2048, max_output_tokens=128)

    def measure(trace_name, n, batch_size, **kw):
        drawn, eligible = sample_requests(
            load_trace(trace_name),
            n,
            seed=kw["seed"],
            max_input_tokens=kw["max_input_tokens"],
            max_output_tokens=kw["max_output_tokens"],
        )
        static = kw["engine"] == "hf"
        return ValidationRun(
            trace=trace_name,
            model=profiles[HF].model,
            engine=kw["engine"],
            mode=kw["mode"],
            batch_size=batch_size,
            batching="static" if static else "continuous",
            input_tokens=drawn.input_tokens.tolist(),
            output_tokens=drawn.output_tokens.tolist(),
            energy_j=100.0 * n,
            uncertainty_j=1.0,
            duration_s=10.0,
            idle_power_w=0.0,
            eligible_requests=eligible,
            window_energy_j=100.0 * n,
        )

    check = validate_recommendation(rec, profiles, spec, measure=measure)
    base, chosen = check.baseline, check.chosen
    assert base.run.batching == "static" and base.padded_j_per_request is not None
    assert base.modelled_j_per_request == pytest.approx(base.padded_j_per_request, rel=1e-12)
    assert chosen.run.batching == "continuous" and chosen.padded_j_per_request is None
    assert any("padded batch" in n for n in check.notes)

"""The physical model: fit, limits, uncertainty, continuous replay, transfer, streaming, the profile file."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_chunks, estimate_trace
from llm_energy.meters.gpus import gpu_spec
from llm_energy.modeling.continuous import run_continuous
from llm_energy.modeling.fitting import fit_physical
from llm_energy.modeling.physical import (
    Coefficients,
    Coverage,
    ErrorModel,
    PhysicalModel,
    ShapeConstants,
)
from llm_energy.modeling.profile import load_profile
from llm_energy.modeling.transfer import transfer

SHAPE = ShapeConstants(1.5e10, 5.24e5, 131072.0, 1.6e10, max_context_tokens=131072)
TRUE = PhysicalModel(
    SHAPE,
    Coefficients((0.007, 1.5e-15, 1.6e-15), (3.2, 1.05e-12, 1.1e-12)),
    Coefficients((0.0048, 0.0, 1.7e-5, 2.5e-13), (2.6, 0.0, 0.015, 1.6e-10)),
    idle_power_w=125.0,
    kv_capacity_tokens=800_000,
    max_num_seqs=256,
    prefill_chunk_tokens=16384,
    coverage=Coverage((128, 8192), (32, 256), (1, 64), (160, 8448)),
    errors=ErrorModel(0.02, 0.01, 0.05),
)


def synthetic_table(model: PhysicalModel) -> pd.DataFrame:
    """A calibration table measured exactly from `model` (no noise)."""
    rows = []
    for b in (1, 4, 16, 64):
        for i in (128, 1024, 8192):
            for o in (32, 256):
                c = model.batch_cost(b, i, o)
                rows.append(
                    {"batch_size": b, "input_len": i, "output_len": o, "prefill_j": float(c.prefill_j),
                     "decode_j": float(c.decode_j), "prefill_s": float(c.prefill_s),
                     "decode_s": float(c.decode_s),
                     "prefill_rel_unc": 0.01, "decode_rel_unc": 0.01, "runs": 1.0}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_fit_recovers_a_known_model_and_its_leave_one_out_error_is_small():
    table = synthetic_table(TRUE)
    fitted, report = fit_physical(
        table, SHAPE, idle_power_w=125.0, kv_capacity_tokens=800_000, max_num_seqs=256,
        prefill_chunk_tokens=16384, peak_flops=989e12, bandwidth_bps=4.8e12,
    )  # fmt: skip
    for b, i, o in ((2, 300, 100), (32, 4096, 64), (1, 100_000, 16)):
        want, got = TRUE.batch_cost(b, i, o), fitted.batch_cost(b, i, o)
        assert float(got.prefill_j + got.decode_j) == pytest.approx(
            float(want.prefill_j + want.decode_j), rel=1e-3
        )
        assert float(got.prefill_s) == pytest.approx(float(want.prefill_s), rel=1e-3)
    assert report["loo_energy"]["max_abs_rel_error"] < 1e-3
    assert report["loo_energy"]["points"] == len(table)


def test_no_term_runs_faster_than_the_gpus_peak():
    """Attention that the calibration barely excites is held at ≥ 1/peak, never an unphysical rate."""
    fast = replace(TRUE, prefill=Coefficients((0.007, 1.5e-15, 1e-17), (3.2, 1.05e-12, 1e-14)))
    fitted, _ = fit_physical(
        synthetic_table(fast), SHAPE, idle_power_w=125.0, kv_capacity_tokens=8e5, max_num_seqs=256,
        peak_flops=989e12, bandwidth_bps=4.8e12, cross_validate=False,
    )  # fmt: skip
    assert fitted.prefill.time_s[2] >= 1 / 989e12 * (1 - 1e-9)
    assert fitted.roofline(989e12, 4.8e12)["attention_of_peak"] <= 1.0 + 1e-9


def test_batch_is_limited_by_kv_capacity_and_max_num_seqs_not_by_the_calibration():
    m = replace(TRUE, kv_capacity_tokens=100_000, max_num_seqs=64)
    assert float(m.max_batch(100, 100)) == 64  # max_num_seqs
    assert float(m.max_batch(9_000, 1_000)) == 10  # KV: 100k / 10k tokens
    assert float(m.max_batch(120_000, 100)) == 1  # never below one


def test_a_request_beyond_the_context_names_its_row():
    with pytest.raises(ConfigError, match=r"row 8: 131,000 input \+ 500 output tokens"):
        TRUE.check_lengths(np.array([10, 131_000.0]), np.array([5, 500.0]), first_row=6)


def test_uncertainty_widens_outside_the_calibrated_range():
    inside = TRUE.errors.relative(TRUE.coverage.octaves_outside(8, 1024, 128))
    far = TRUE.errors.relative(TRUE.coverage.octaves_outside(8, 65536, 128))
    assert float(inside) == pytest.approx(np.hypot(0.02, 0.01))
    assert float(far) > float(inside) + 0.1  # 3 octaves beyond 8192 at 5%/octave


def test_continuous_replay_of_one_request_is_a_batch_of_one():
    run = run_continuous(TRUE, np.array([512]), np.array([64]))
    c = TRUE.batch_cost(1, 512, 64)
    assert run.energy_j == pytest.approx(float(c.prefill_j + c.decode_j), rel=1e-9)
    assert run.ttft_s[0] == pytest.approx(float(c.prefill_s))
    assert run.e2e_s[0] == pytest.approx(float(c.prefill_s + c.decode_s))


def test_continuous_replay_finishes_every_request_and_a_small_cap_costs_more():
    rng = np.random.default_rng(0)
    lin, lout = rng.integers(100, 3000, 200), rng.integers(5, 400, 200)
    wide = run_continuous(TRUE, lin, lout, max_num_seqs=256)
    narrow = run_continuous(TRUE, lin, lout, max_num_seqs=8)
    assert np.isfinite(wide.e2e_s).all() and np.isfinite(narrow.e2e_s).all()
    assert (wide.e2e_s >= wide.ttft_s).all()
    assert narrow.energy_j > 1.5 * wide.energy_j  # the weights are read per step for fewer sequences
    assert wide.prefill_j + wide.decode_j >= wide.energy_j  # a mixed pass pays its constant once


def test_transfer_scales_memory_terms_by_bandwidth_and_keeps_compute_at_equal_peaks():
    h100, h200 = gpu_spec("NVIDIA H100 80GB HBM3"), gpu_spec("NVIDIA H200")
    moved = transfer(TRUE, h100, h200)
    assert moved.decode.time_s[3] == pytest.approx(TRUE.decode.time_s[3] * 3.35 / 4.8)
    assert moved.prefill.time_s[1] == pytest.approx(TRUE.prefill.time_s[1])  # same dense bf16 peak


def test_streamed_chunks_add_up_to_the_whole_trace(sim_profile):
    rng = np.random.default_rng(1)
    lin, lout = rng.integers(100, 2000, 3000), rng.integers(10, 120, 3000)
    whole = estimate_trace(lin, lout, sim_profile)
    parts = estimate_chunks(
        ((lin[k : k + 1000], lout[k : k + 1000]) for k in range(0, 3000, 1000)), sim_profile
    )
    assert parts.total_j == pytest.approx(whole.total_j)
    assert parts.requests == whole.requests == 3000
    assert parts.request_p50_j == pytest.approx(whole.request_p50_j)
    assert sum(c["requests"] for c in parts.per_class) == 3000


def test_estimate_counts_what_is_outside_and_strict_range_refuses():
    prof = load_profile("h100-llama-3.1-8b-vllm")  # calibrated to input 8192
    lin, lout = np.array([512, 60_000]), np.array([64, 64])
    est = estimate_trace(lin, lout, prof)
    assert est.outside_calibration == 1
    assert 0.5 < est.outside_energy_share < 1  # the long prompt dominates the energy
    with pytest.raises(ConfigError, match=r"row 2: 60000 input / 64 output .*outside the calibrated range"):
        estimate_trace(lin, lout, prof, strict_range=True)


def test_p1_reports_kept_dropped_and_a_scaled_total(sim_profile):
    est = estimate_trace(
        np.array([100, 9000, 300, 200]), np.array([10, 10, 600, 20]), sim_profile, method="p1"
    )
    assert (est.requests, est.dropped, est.requests_total) == (2, 2, 4)
    assert est.scaled_total_j == pytest.approx(2 * est.total_j)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["grid"].update(batches=d["grid"]["batches"][::-1]),
            "grid.batches must be positive and strictly",
        ),
        (lambda d: d["physical"]["decode"].update(energy_j=[-1.0, 0, 0, 0]), "physical.decode.energy_j"),
        (lambda d: d.pop("model"), "invalid profile field model"),
        (lambda d: d.update(gpu_count="two"), "invalid profile field gpu_count"),
        (lambda d: d.update(format=1), "refit it with `llm-energy fit`"),
    ],
)
def test_a_bad_profile_file_is_one_clear_error(tmp_path, mutate, message):
    data = load_profile("h100-llama-3.1-8b-vllm").to_dict()
    data = json.loads(json.dumps(data))
    mutate(data)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_a_binary_profile_is_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\x89PNG\x00\xff\xfe")
    with pytest.raises(ConfigError, match="not an llm-energy profile"):
        load_profile(path)

"""Sweep → store → fit → estimate on the simulated engine, where the true energy is known."""

from __future__ import annotations

import numpy as np
import pytest

from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_trace
from llm_energy.modeling.bins import log_bins, p1_bins
from llm_energy.modeling.profile import load_profile

# SimulatedEngine defaults: prefill 2e-5 s/token at 650 W, decode 0.01 s/step at 400 W (any batch).
PREFILL_J_PER_TOKEN = 650 * 2e-5
DECODE_J_PER_STEP = 400 * 0.01


@pytest.fixture
def profile(sim_profile):
    """The shared simulated profile (tests/conftest.py)."""
    return sim_profile


def true_request_j(batch, lin, lout):
    return PREFILL_J_PER_TOKEN * lin + DECODE_J_PER_STEP * (lout - 1) / batch


def test_a_single_measured_point_is_estimated_back(profile):
    """A trace of requests exactly at a measured grid point estimates that point's measurement back."""
    lin, lout = np.full(64, 512), np.full(64, 128)
    est = estimate_trace(lin, lout, profile, batch_size=16)
    assert est.total_j == pytest.approx(64 * true_request_j(16, 512, 128), rel=0.08)
    assert est.uncertainty_j > 0
    assert abs(est.total_j - 64 * true_request_j(16, 512, 128)) <= est.uncertainty_j


@pytest.mark.parametrize("method", ["binned", "parametric"])
def test_methods_recover_the_simulated_truth_between_grid_points(profile, method):
    """Requests between grid points (batch 8, lengths off-grid) are estimated within 10% of the truth."""
    rng = np.random.default_rng(0)
    lin = rng.integers(150, 1800, 2000)
    lout = rng.integers(40, 120, 2000)
    est = estimate_trace(lin, lout, profile, method=method, batch_size=8)
    truth = true_request_j(8, lin, lout).sum()
    assert est.total_j == pytest.approx(truth, rel=0.10)
    assert est.prefill_j + est.decode_j == pytest.approx(est.total_j)


def test_p1_drops_and_counts_requests_above_the_caps(profile):
    """The seed's rule drops requests above 8192 in / 512 out and counts them."""
    lin = np.array([100, 9000, 300])
    lout = np.array([10, 10, 600])
    est = estimate_trace(lin, lout, profile, method="p1", batch_size=4)
    assert (est.requests, est.dropped) == (1, 2)


def test_largest_feasible_batch_is_the_default(profile):
    """Without --batch-size, requests run at the largest batch the engine runs: the simulated engine has no
    KV cache or concurrency cap, so the largest batch its calibration ran (16), not batch 1."""
    lin, lout = np.full(10, 512), np.full(10, 128)
    default = estimate_trace(lin, lout, profile)
    single = estimate_trace(lin, lout, profile, batch_size=1)
    assert default.total_j == pytest.approx(10 * true_request_j(16, 512, 128), rel=0.08)
    assert single.total_j > 3 * default.total_j


def test_bad_inputs(profile):
    """Unknown method, empty trace, batch 0: one clear error each."""
    with pytest.raises(ConfigError, match="unknown method"):
        estimate_trace(np.array([1]), np.array([1]), profile, method="magic")
    with pytest.raises(ConfigError, match="empty"):
        estimate_trace(np.array([]), np.array([]), profile)
    with pytest.raises(ConfigError, match="batch size"):
        estimate_trace(np.array([1]), np.array([2]), profile, batch_size=0)


def test_profile_round_trip_and_bad_files(profile, tmp_path):
    """A saved profile loads back equal in effect; a broken or foreign file is a clear error."""
    path = tmp_path / "p.json"
    profile.save(path)
    again = load_profile(path)
    lin, lout = np.array([300, 700]), np.array([50, 90])
    assert estimate_trace(lin, lout, again).total_j == pytest.approx(
        estimate_trace(lin, lout, profile).total_j
    )
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not an llm-energy profile .not JSON"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "foreign.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not an llm-energy profile"):
        load_profile(tmp_path / "foreign.json")
    with pytest.raises(ConfigError, match="no profile"):
        load_profile(tmp_path / "missing.json")


def test_bundled_profile_estimates_azure_conv_faster_than_flops_says():
    """The bundled H100 profile estimates the bundled Azure conv trace; FLOPs underestimate it."""
    from llm_energy.workloads import load_trace

    trace = load_trace("azure-conv")
    est = estimate_trace(trace.input_tokens, trace.output_tokens, load_profile())
    assert est.requests == 19366
    assert est.flops_ratio > 1.5
    assert 0 < est.prefill_share < 1


def test_bins():
    """Power-of-two bins put a length in the smallest edge ≥ it; log bins cover the maxima."""
    b = p1_bins()
    i, o, kept = b.assign(np.array([16, 17, 8192, 8193]), np.array([8, 9, 512, 1]))
    assert list(np.asarray(b.input_edges)[i[:3]]) == [16, 32, 8192]
    assert list(kept) == [True, True, True, False]
    lb = log_bins(5000, 700)
    assert lb.input_edges[-1] >= 5000 and lb.output_edges[-1] >= 700
    with pytest.raises(ConfigError):
        type(b)((4, 2), (1,))


def test_estimate_cli_runs_offline_and_fit_cli(tmp_path, sim_calibration_spec):
    """`estimate` on the bundled trace and profile prints kWh and the FLOPs ratio; `fit` writes a profile."""
    import json

    from typer.testing import CliRunner

    from llm_energy.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["estimate", "--trace", "azure-code", "--carbon-intensity", "400", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["requests"] == 8819 and data["co2_g"] > 0 and data["flops_ratio"] > 1
    bad = runner.invoke(app, ["estimate", "--trace", str(tmp_path / "nope.csv")])
    assert bad.exit_code == 2
    spec = tmp_path / "s.yaml"
    spec.write_text(sim_calibration_spec)
    db = tmp_path / "r.db"
    assert runner.invoke(app, ["sweep", str(spec), "--db", str(db)]).exit_code == 0
    fitted = runner.invoke(app, ["fit", "--db", str(db), "-o", str(tmp_path / "p.json")])
    assert fitted.exit_code == 0, fitted.output
    assert load_profile(tmp_path / "p.json").points == 18


def test_online_rate_sets_the_batch_by_littles_law(profile):
    """Requests in flight = rate × time per request: a tiny rate gives batch 1, a high rate a larger batch
    (capped at the largest calibrated), and the energy per request falls as the batch grows."""
    from llm_energy.estimate import batch_for_rate

    lin, lout = np.full(100, 512), np.full(100, 100)
    assert batch_for_rate(profile, 0.01, lin, lout) == 1
    mid = batch_for_rate(profile, 10.0, lin, lout)
    assert 1 < mid <= 16
    assert batch_for_rate(profile, 1e4, lin, lout) == 16
    slow = estimate_trace(lin, lout, profile, batch_size=batch_for_rate(profile, 0.01, lin, lout))
    fast = estimate_trace(lin, lout, profile, batch_size=mid)
    assert fast.total_j < slow.total_j
    with pytest.raises(ConfigError, match="rate"):
        batch_for_rate(profile, 0.0, lin, lout)


def test_online_rate_and_batch_size_are_exclusive():
    """--online-rate with --batch-size is one clear error, exit 2."""
    from typer.testing import CliRunner

    from llm_energy.cli import app

    result = CliRunner().invoke(app, ["estimate", "--online-rate", "5", "--batch-size", "8"])
    assert result.exit_code == 2

"""Recommendation over profile × batch candidates, on a simulated calibration with known physics."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.errors import ConfigError
from llm_energy.modeling.profile import fit_profile, load_profile
from llm_energy.recommend import recommend
from llm_energy.store import Store
from llm_energy.sweep.spec import parse_spec
from llm_energy.sweep.sweep import run_sweep

SPEC = """\
name: sim
models: [sim]
engines: [{engine: simulated}]
batch_sizes: [1, 4, 16]
input_lens: [128, 512]
output_lens: [32, 128]
window_s: 1.0
idle_s: 1.0
"""


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    with Store(tmp_path_factory.mktemp("db") / "r.db") as store:
        run_sweep(parse_spec(SPEC), store)
        return fit_profile(store.runs_frame())


def test_choice_is_the_cheapest_feasible_and_larger_batches_are_cheaper(profile):
    """Without a binding SLO the largest batch wins; a tight TTFT bound forces a smaller batch."""
    lin, lout = np.full(50, 300), np.full(50, 60)
    loose = recommend({"sim": profile}, lin, lout, rate_per_s=1.0, slo_s={"tpot": 1.0})
    assert loose.choice is not None and loose.choice.batch_size == 16
    assert loose.saving is not None and loose.saving > 0.5
    energies = [c.energy_per_request_j for c in sorted(loose.candidates, key=lambda c: c.batch_size)]
    assert energies == sorted(energies, reverse=True)
    ttft_4 = next(c.ttft_s for c in loose.candidates if c.batch_size == 4)
    tight = recommend({"sim": profile}, lin, lout, rate_per_s=1.0, slo_s={"ttft": ttft_4 * 1.01})
    assert tight.choice is not None and tight.choice.batch_size == 4
    assert all(c.feasible or c.batch_size > 4 or not c.keeps_up for c in tight.candidates)


def test_no_feasible_configuration_and_bad_input(profile):
    """An impossible SLO gives no choice; bad rate or metric is a ConfigError."""
    lin, lout = np.full(10, 300), np.full(10, 60)
    assert recommend({"sim": profile}, lin, lout, rate_per_s=1.0, slo_s={"ttft": 1e-9}).choice is None
    with pytest.raises(ConfigError, match="rate"):
        recommend({"sim": profile}, lin, lout, rate_per_s=0, slo_s={})
    with pytest.raises(ConfigError, match="SLO metric"):
        recommend({"sim": profile}, lin, lout, rate_per_s=1, slo_s={"latency": 1.0})


def test_cli_recommend_on_bundled_profile():
    """The bundled profile recommends a batch for Azure conv under a loose SLO; an impossible SLO exits 1."""
    runner = CliRunner()
    ok = runner.invoke(app, ["recommend", "--trace", "azure-conv", "--slo", "ttft=2s,tpot=100ms"])
    assert ok.exit_code == 0, ok.output
    assert "saving vs batch 1" in ok.output
    assert runner.invoke(app, ["recommend", "--slo", "ttft=1ms"]).exit_code == 1
    assert runner.invoke(app, ["recommend", "--slo", "ttft=fast"]).exit_code == 2
    assert load_profile() is not None

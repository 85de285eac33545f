"""Grid carbon intensity table, footprints, and carbon/cost on estimate and report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_energy.carbon import Footprint, check_price, grid_table, parse_carbon_intensity, regions
from llm_energy.cli import app
from llm_energy.errors import ConfigError
from llm_energy.estimate import estimate_trace


def test_bundled_table_states_source_and_year():
    """The table names its source and year and holds plausible intensities (0-1200 gCO2/kWh)."""
    table = grid_table()
    assert table["year"] == 2023 and "Ember" in table["source"]
    assert "world" in regions() and all(0 < v < 1200 for v in regions().values())


def test_parse_carbon_intensity_number_region_and_errors():
    """A number is taken as given; a region (any case) is looked up with its provenance; bad input named."""
    given = parse_carbon_intensity("123.5")
    assert given is not None and (given.g_per_kwh, given.label) == (123.5, "given")
    region = parse_carbon_intensity("Germany")
    assert region is not None and region.g_per_kwh == regions()["germany"] and "2023" in region.label
    assert parse_carbon_intensity(None) is None
    with pytest.raises(ConfigError, match="'atlantis'"):
        parse_carbon_intensity("atlantis")
    with pytest.raises(ConfigError, match="≥ 0"):
        parse_carbon_intensity("-5")
    with pytest.raises(ConfigError, match="price"):
        check_price(-0.1)
    assert check_price(0.0) == 0.0


def test_footprint_per_1000_requests_and_per_day():
    """3.6 kJ per request is 1 kWh per 1,000 requests; at 1 req/s that is 86.4 kWh/day."""
    fp = Footprint(3600.0, 1.0, carbon_g_per_kwh=400.0, price_per_kwh=0.25)
    assert fp.kwh_per_1000_requests == pytest.approx(1.0)
    assert fp.kwh_per_day == pytest.approx(86.4)
    assert fp.co2_kg_per_1000_requests == pytest.approx(0.4)
    assert fp.co2_kg_per_day == pytest.approx(86.4 * 0.4)
    assert fp.cost_per_1000_requests == pytest.approx(0.25)
    assert fp.cost_per_day == pytest.approx(86.4 * 0.25)
    untimed = Footprint(3600.0, 0.0)
    assert untimed.kwh_per_day is None and untimed.co2_kg_per_1000_requests is None
    assert len(fp.lines()) == 3 and len(untimed.lines()) == 1


def test_estimate_footprint_uses_the_trace_rate(sim_profile):
    """An estimate over a timed trace gives per-day figures at requests / duration."""
    lin, lout = np.full(100, 512), np.full(100, 64)
    est = estimate_trace(lin, lout, sim_profile, duration_s=50.0, carbon_g_per_kwh=200.0, price_per_kwh=0.1)
    fp = est.to_dict()["footprint"]
    per_request_kwh = est.total_kwh / 100
    assert fp["kwh_per_day"] == pytest.approx(per_request_kwh * 2.0 * 86400)
    assert fp["co2_kg_per_1000_requests"] == pytest.approx(per_request_kwh * 1000 * 0.2)


def test_estimate_and_report_cli_take_a_region_and_price(tmp_path):
    """`estimate --carbon-intensity REGION` reports the region's figure; `report` shows the footprint."""
    runner = CliRunner()
    result = runner.invoke(
        app, ["estimate", "--trace", "azure-code", "--carbon-intensity", "world", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["carbon_g_per_kwh"] == regions()["world"] and "world" in data["carbon_source"]
    assert data["footprint"]["co2_kg_per_day"] > 0
    assert runner.invoke(app, ["estimate", "--carbon-intensity", "atlantis"]).exit_code == 2
    html = tmp_path / "r.html"
    args = [
        "report",
        "-o",
        str(html),
        "--trace",
        "azure-code",
        "--carbon-intensity",
        "france",
        "--price",
        "0.2",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    text = html.read_text()
    assert "per 1,000 requests" in text and "kgCO2/day" in text and "france (2023" in text
    assert runner.invoke(app, ["report", "-o", str(html), "--price", "-2"]).exit_code == 2

"""The report leads with what a reader came for; the long tables come last, folded.

Order: headline numbers, the energy–latency frontier, energy against batch size per engine, the trace
estimate with its uncertainty, then the other figures and the method, then the configurations,
environment and energy-model tables inside `<details>`.
"""

from __future__ import annotations

import re

import pytest

from llm_energy.report import render_report
from llm_energy.report.sample import all_bundled_calibrations_frame

STAMP = "2026-01-01T00:00:00+00:00"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def two_engines():
    """Every bundled calibration: H100 hf eager and vllm cudagraphs, H200 vllm cudagraphs."""
    return all_bundled_calibrations_frame()


@pytest.fixture(scope="module")
def report(two_engines, estimate, profile) -> str:
    return render_report(two_engines, estimate=estimate, profile=profile, generated_at=STAMP, dpi=20)


def _headings(text: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", text)


def test_sections_come_in_reading_order(report):
    headings = _headings(report)
    assert headings[:3] == ["Headline", "Energy, latency and batch size", "Trace estimate"]
    order = [
        "Headline",
        "Energy, latency and batch size",
        "Trace estimate",
        "Prefill, decode and length",
        "Method",
        "Configurations",
        "Environment",
        "Energy model",
    ]
    assert [h for h in headings if h in order] == order


def test_the_first_figure_is_the_frontier_then_energy_vs_batch_per_engine(report):
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", report)
    assert "Pareto frontier" in captions[0]
    assert "against batch size, engine hf" in captions[1]
    assert "against batch size, engine vllm" in captions[2]
    assert report.index("<figure>") < report.index("<table")  # a figure before any table


def test_tables_are_folded_after_the_figures(report):
    folded = re.findall(r"<details><summary><h2>([^<]*)</h2></summary>", report)
    assert folded == ["Configurations", "Environment", "Energy model"]
    configs = report.index('<table class="configs">')
    assert configs > report.index("<details><summary><h2>Configurations")
    assert configs > report.rindex("<figure>")
    assert "NVIDIA H100 80GB HBM3" in report[report.index("<summary><h2>Environment") :]


def test_the_headline_states_the_measured_extremes_and_the_estimate_with_its_uncertainty(
    report, two_engines, estimate
):
    head = report[report.index("<h2>Headline") : report.index("<h2>Energy, latency")]
    text = re.sub(r"<[^>]+>", "", head)
    assert f"{len(two_engines)} runs" in text
    assert "measured on NVIDIA H100 80GB HBM3" in text
    assert re.search(
        r"Lowest measured GPU energy: [0-9.]+ ± [0-9.e-]+ J per output token "
        r"\(llama-3\.1-8b (hf eager|vllm cudagraphs), batch \d+, input/output \d+/\d+\)",
        text,
    ), text
    assert "Lowest per engine: hf " in text and "; vllm " in text
    rel = estimate.uncertainty_j / estimate.total_j
    assert f"± {100 * rel:.1f}%" in text and "kWh" in text and "modelled from profile" in text


def test_the_headline_escapes_names_from_the_data(two_engines):
    hostile = two_engines.copy()
    hostile["model"] = EVIL
    text = render_report(hostile, generated_at=STAMP, figures=False)
    head = text[text.index("<h2>Headline") : text.index("<h2>Method")]
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in head


def test_a_report_of_cpu_runs_says_so_in_the_headline():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "model": ["tiny"],
            "engine": ["hf"],
            "mode": ["eager"],
            "batch_size": [1],
            "input_len": [16],
            "output_len": [4],
            "status": ["ok"],
            "total_energy_j": [float("nan")],
            "total_tokens": [4],
            "total_duration_s": [0.01],
            "env_gpu_count": [0],
        }
    )
    text = render_report(frame, generated_at=STAMP, figures=False)
    assert "No configuration has measured GPU energy" in text

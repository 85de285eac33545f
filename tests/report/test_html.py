"""Tests of llm_energy.report.html and .tables: an offline, escaped, atomically written report."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from llm_energy.errors import ConfigError
from llm_energy.modeling.parametric import ParametricModel
from llm_energy.records import Measurement, Phase, PhaseResult, RunResult
from llm_energy.report import render_report, runs_table, write_report
from llm_energy.report.sample import sample_report

EVIL = "<script>alert(1)</script>"
STAMP = "2026-01-01T00:00:00+00:00"
DATA_PNG = '<img src="data:image/png;base64,'
FIGURES = 5  # energy_vs_batch, phase_split, energy_vs_length x2, pareto_frontier


@pytest.fixture(scope="module")
def hostile(calibration: pd.DataFrame) -> pd.DataFrame:
    """The calibration runs with markup in a model name, an env value and a flag."""
    frame = calibration.copy()
    frame.loc[frame.index[:5], "model"] = EVIL
    frame["env_host"] = '"><img src=x onerror=alert(2)>'
    frame["total_flags"] = "short-window:gpu:0;<b>bold</b>"
    return frame


@pytest.fixture(scope="module")
def full_report(hostile, estimate, profile) -> str:
    return render_report(hostile, estimate=estimate, profile=profile, title=f"T {EVIL}", generated_at=STAMP)


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_embeds_every_figure_as_a_png_data_uri(full_report):
    images = _images(full_report)
    # The estimate is the physical model's (the default): per request, no bins to draw.
    assert full_report.count(DATA_PNG) == len(images) == FIGURES
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    assert all(b"matplotlib.org" not in image for image in images)


def test_a_binned_estimate_adds_its_largest_bins(calibration, binned_estimate, profile):
    """A binned (or p1) estimate has a per-bin table: the report draws its largest bins as one more figure."""
    text = render_report(calibration, estimate=binned_estimate, profile=profile, generated_at=STAMP, dpi=20)
    assert text.count(DATA_PNG) == FIGURES + 1
    assert "Energy of the largest bins of the trace estimate" in text
    assert "binned by length" in text  # the estimate says how it was made


def test_the_estimate_states_its_method_outside_share_and_classes(full_report, estimate):
    """The physical estimate says how it costs requests, how much of its energy is extrapolated, and
    splits the energy and its 1-σ by input-length class."""
    section = full_report.split("<h2>Trace estimate")[1].split("<h2>")[0]
    assert "physical model" in section and "binned by length" not in section
    # The 2,000 random requests reach 4,000 input and 700 output tokens: some lie outside the H100
    # vLLM calibration (inputs 128-8,192, outputs 32-512), so part of the energy is extrapolated.
    assert 0 < estimate.outside_calibration < estimate.requests
    assert f"holding {100 * estimate.outside_energy_share:.1f}% of the energy" in section
    assert [c["class"] for c in estimate.per_class] == ["input ≤ 1k", "input 1k–8k"]  # inputs < 4,000
    assert "By input length" in section
    for c in estimate.per_class:
        assert f"<td>{c['class']}</td>" in section
    assert sum(c["energy_j"] for c in estimate.per_class) == pytest.approx(estimate.total_j)


def test_report_references_nothing_online(full_report):
    """No URL at all, no external resource, no script; the CSP forbids loading anything else."""
    assert not re.search(r"(?i)https?://", full_report)
    assert "//" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", full_report)
    sources = re.findall(r'(?i)\b(?:src|href)\s*=\s*"([^"]*)"', full_report)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(?i)<script|<link|<iframe|@import|url\(", full_report)
    assert "default-src 'none'" in full_report


def test_report_escapes_every_value_from_the_data(full_report):
    assert EVIL not in full_report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full_report
    assert "onerror=alert(2)>" not in full_report
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in full_report
    assert "<b>bold</b>" not in full_report and "&lt;b&gt;bold&lt;/b&gt;" in full_report
    assert f"<title>T {EVIL}" not in full_report


def test_report_states_environment_method_and_model_fit(full_report, estimate, profile):
    text = full_report
    # The physical model's leave-one-out error over every calibration point (not only interior ones):
    # each of the profile's 40 points predicted by the model fitted on the other 39; their signed errors
    # are stored per point, the mean and max of their magnitudes are 2.2% and 6.0%.
    errors = np.abs(profile.fit_quality["loo_energy_errors"])
    assert len(errors) == len(profile.calibration) == 40
    loo = f"mean {100 * errors.mean():.1f}%, max {100 * errors.max():.1f}%"
    assert loo == "mean 2.2%, max 6.0%"
    # The parametric model's rms error is that of its fit to the stored calibration table (refitted here).
    refit = ParametricModel.fit(profile.calibration)
    parametric = (
        f"prefill {100 * refit.prefill_rms_rel_error:.1f}%, decode {100 * refit.decode_rms_rel_error:.1f}%"
    )
    growth = profile.fit_quality["extrapolation"]["per_octave"]
    for expected in (
        "NVIDIA H100 80GB HBM3",
        "580.159.04",  # driver
        "version of vllm</th><td>0.25.1",
        "0.0975",  # NVML update period (s)
        "docs/methodology.md",
        "Trace estimate",
        f"{loo} (rms ",
        "over 40 points, each predicted by the model fitted on all the others",
        f"grows by {100 * growth:.1f}% of the estimate per octave",
        "measured on 5 cuts",  # the H100 profile's extrapolation: 2 input cuts, 3 batch cuts
        "input 128–8,192, output 32–512, batch 1–128",  # its calibrated range
        "KV cache 412,494 tokens",
        f"{100 * estimate.outside_energy_share:.1f}% of its energy",  # the estimate outside the range
        parametric,
        f"Generated {STAMP}",
        "30 runs (30 ok)",
    ):
        assert expected in text, expected
    assert f"{estimate.total_kwh:.3g} kWh" in text
    model = text.split("<h2>Energy model")[1]
    assert "{" not in model  # every statistic in words, no raw dictionary


def test_report_shows_each_configuration_once(calibration):
    text = render_report(calibration, generated_at=STAMP, figures=False)
    assert DATA_PNG not in text
    body = text.split('<table class="configs">')[1].split("</table>")[0]
    assert body.count("<tr>") == 1 + len(calibration)  # header + one row per configuration
    assert "2.9 ± 0.13" in body  # B1, 128/32: 92.78 J / 32 tokens ± 4.17 J / 32


def test_report_without_estimate_or_profile_has_no_such_sections(calibration):
    text = render_report(calibration, generated_at=STAMP, figures=False)
    assert "Trace estimate" not in text and "Energy model" not in text


def test_report_of_no_runs_renders_without_figures():
    text = render_report(pd.DataFrame(), generated_at=STAMP)
    assert "No runs." in text and "no runs" in text
    assert DATA_PNG not in text


def test_a_figure_that_cannot_be_drawn_becomes_a_note(calibration):
    text = render_report(calibration.drop(columns=["prefill_energy_j"]), generated_at=STAMP)
    assert text.count(DATA_PNG) == FIGURES - 1
    assert "Figure not drawn" in text and "prefill_energy_j" in text


def test_report_without_env_columns_takes_the_environment_from_the_profile(calibration, profile):
    bare = calibration.drop(columns=[c for c in calibration.columns if c.startswith("env_")])
    text = render_report(bare, profile=profile, generated_at=STAMP, figures=False)
    assert "shown from the profile" in text and "NVIDIA H100 80GB HBM3" in text


def test_report_warns_when_runs_come_from_several_environments(calibration):
    mixed = calibration.copy()
    mixed.loc[mixed.index[0], "env_driver"] = "999.0"
    assert "more than one environment" in render_report(mixed, generated_at=STAMP, figures=False)


def test_report_refuses_a_table_that_is_not_a_runs_frame():
    with pytest.raises(ConfigError, match="total_energy_j"):
        render_report(pd.DataFrame({"a": [1]}))


def _stored_run(run_id: str, batch_size: int, *, status: str = "ok") -> RunResult:
    def measurement(duration_s: float, joules: float) -> Measurement:
        return Measurement(
            duration_s=duration_s,
            energy_j={"gpu:0": joules},
            uncertainty_j={"gpu:0": joules / 50},
            source={"gpu:0": "measured"},
            flags=("derived:total-minus-prefill",) if joules < 300 else (),
        )

    phases: dict[Phase, PhaseResult] = {}
    if status == "ok":
        phases = {
            "prefill": PhaseResult("prefill", measurement(0.1, 70.0), 1, batch_size * 128),
            "decode": PhaseResult("decode", measurement(0.4, 280.0), 1, batch_size * 31),
            "total": PhaseResult("total", measurement(0.5, 350.0), 1, batch_size * 32),
        }
    return RunResult(
        run_id=run_id,
        config={"model": "tiny", "engine": "simulated", "mode": None, "batch_size": batch_size,
                "input_len": 128, "output_len": 32},
        env={"gpu_name": "Simulated H100", "driver": "sim", "versions": {"torch": None, "zeus": "0.16.0"},
             "gpus": [{"update_period_s": 0.1}], "notes": ["simulated device"], "env_id": "abc"},
        phases=phases,
        status=status,
        error="CUDA out of memory" if status != "ok" else None,
    )  # fmt: skip


def test_report_and_table_of_a_real_store(tmp_store):
    """Runs read back from the store (JSON env cells, flags, an oom) render in HTML and on the console."""
    tmp_store.write_runs([_stored_run("a", 4), _stored_run("b", 4), _stored_run("c", 16, status="oom")])
    frame = tmp_store.runs_frame()
    text = render_report(frame, generated_at=STAMP)
    assert text.count(DATA_PNG) == FIGURES
    assert "Simulated H100" in text and "version of zeus</th><td>0.16.0" in text
    assert "simulated device" in text and "3 runs (2 ok, 1 oom)" in text
    assert "derived:total-minus-prefill" in text
    assert "0 (1 oom)" in text  # batch 16: no successful run
    table = runs_table(frame)
    assert table.row_count == 2
    console = Console(record=True, width=250)
    console.print(table)
    assert "2.73 ± 0.055" in console.export_text()  # 350 J / (4 x 32) tokens ± 7 J / 128


def test_runs_table_shows_markup_in_the_data_verbatim(hostile):
    table = runs_table(hostile)
    assert table.row_count == len(hostile)
    console = Console(record=True, width=300)
    console.print(table)
    assert EVIL in console.export_text()
    assert "[bold]x" in _console_text(runs_table(hostile.assign(model="[bold]x")))


def _console_text(table) -> str:
    console = Console(record=True, width=300)
    console.print(table)
    return console.export_text()


def test_runs_table_of_no_runs_is_empty():
    assert runs_table(pd.DataFrame()).row_count == 0


def test_write_report_replaces_the_file_atomically(tmp_path: Path):
    target = tmp_path / "out" / "report.html"
    assert write_report(target, "<p>one</p>") == target
    first = target.stat().st_ino
    write_report(target, "<p>two ü</p>")
    assert target.read_text(encoding="utf-8") == "<p>two ü</p>"
    assert target.stat().st_ino != first  # a new file renamed over the old one, not rewritten in place
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_write_report_failure_leaves_the_target_and_no_temporary_file(tmp_path: Path):
    target = tmp_path / "report.html"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(ConfigError, match="cannot write"):
        write_report(target, "<p>x</p>")
    assert target.is_dir() and list(target.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def _chromium() -> str | None:
    return shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed")
def test_chromium_renders_the_sample_report_offline(tmp_path: Path):
    """A headless browser, with networking off, renders a page that is not blank."""
    from matplotlib.image import imread

    page = write_report(tmp_path / "report.html", sample_report(generated_at=STAMP))
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    grey = pixels[..., :3].mean(axis=2)
    assert float(np.var(grey)) > 0
    assert float((grey < 0.9).mean()) > 0.01  # more than a few stray pixels of ink

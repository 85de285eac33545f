"""`llm-energy report` and `plot` from the command line, on the bundled calibration data."""

from __future__ import annotations

from typer.testing import CliRunner

from llm_energy.cli import app


def test_report_and_plot_commands_write_files(tmp_path):
    """report writes one offline HTML file with embedded images; plot writes a PNG; a bad kind exits 2."""
    runner = CliRunner()
    html = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "-o", str(html), "--trace", "azure-code"])
    assert result.exit_code == 0, result.output
    text = html.read_text()
    assert "data:image/png;base64," in text and "https://" not in text
    png = tmp_path / "p.png"
    assert runner.invoke(app, ["plot", "energy-vs-batch", "-o", str(png)]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(app, ["plot", "nope", "-o", str(png)])
    assert bad.exit_code == 2


def test_the_default_database_is_every_bundled_calibration() -> None:
    """Without --db, report and plot read every engine measured for the package, not one of them."""
    from llm_energy.report.sample import all_bundled_calibrations_frame, bundled_calibration_frame

    frame = all_bundled_calibrations_frame()
    assert {"vllm", "hf"} <= set(frame["engine"])
    vllm = bundled_calibration_frame("h100-llama-3.1-8b-vllm-cudagraphs")
    hf = bundled_calibration_frame("h100-llama-3.1-8b-hf-eager")
    assert len(frame) == len(vllm) + len(hf)

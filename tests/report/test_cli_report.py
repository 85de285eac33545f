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
    """Without --db, report and plot read every engine and GPU measured for the package, not one of them:
    every calibration CSV shipped in llm_energy/data/calibration (H100 vLLM and HF eager, H200 vLLM CUDA
    graphs and eager), each with its own environment."""
    from importlib import resources

    from llm_energy.report.sample import all_bundled_calibrations_frame, bundled_calibration_frame

    folder = resources.files("llm_energy").joinpath("data", "calibration")
    stems = sorted(f.name.removesuffix(".csv") for f in folder.iterdir() if f.name.endswith(".csv"))
    assert {
        "h100-llama-3.1-8b-hf-eager",
        "h100-llama-3.1-8b-vllm-cudagraphs",
        "h200-llama-3.1-8b-vllm-cudagraphs",
    } <= set(stems)
    frame = all_bundled_calibrations_frame()
    assert len(frame) == sum(len(bundled_calibration_frame(stem)) for stem in stems)
    assert {"vllm", "hf"} <= set(frame["engine"])
    assert {"NVIDIA H100 80GB HBM3", "NVIDIA H200"} <= set(frame["env_gpu_name"])
    # Each calibration keeps its environment: one per CSV; HF and vLLM on the H100 are two software stacks,
    # while the H200's vLLM CUDA-graphs and eager runs share one (same GPU, driver and packages).
    ids = {stem: set(bundled_calibration_frame(stem)["env_env_id"]) for stem in stems}
    assert all(len(v) == 1 for v in ids.values())
    assert ids["h100-llama-3.1-8b-hf-eager"] != ids["h100-llama-3.1-8b-vllm-cudagraphs"]
    assert ids["h200-llama-3.1-8b-vllm-eager"] == ids["h200-llama-3.1-8b-vllm-cudagraphs"]
    assert frame["env_env_id"].nunique() == len(set().union(*ids.values()))

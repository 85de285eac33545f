"""The report's "Model validation" and "Recommendation" sections, from the API and the command line.

The validation files in `data/` are real H100 runs copied from docs/results/2026-11-23-h100-vllm-validation
and 2026-11-23-h100-hf-eager-calibration-rest (vLLM with CUDA graphs at batch 16 and HF eager at batch 64,
500 requests of azure-conv each).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.errors import ConfigError
from llm_energy.modeling.profile import EnergyProfile, load_profile
from llm_energy.report import render_report
from llm_energy.report.recommendation_section import recommend_for_report
from llm_energy.report.validation_section import load_validation_runs, validation_entries
from llm_energy.workloads import load_trace

DATA = Path(__file__).parent / "data"
VLLM_RUN = DATA / "val-vllm-cudagraphs-azure-conv-b16.json"
HF_RUN = DATA / "val-hf-eager-azure-conv-b64.json"
VLLM = "h100-llama-3.1-8b-vllm"
HF = "h100-llama-3.1-8b-hf-eager"
EVIL = "<script>alert(1)</script>"
STAMP = "2026-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def profiles() -> dict[str, EnergyProfile]:
    return {VLLM: load_profile(VLLM), HF: load_profile(HF)}


def _render(**kwargs: object) -> str:
    return render_report(pd.DataFrame(), generated_at=STAMP, figures=False, **kwargs)  # type: ignore[arg-type]


def _section(text: str, heading: str) -> str:
    return text.split(f"<h2>{heading}")[1].split("<h2>", maxsplit=1)[0]


def test_validation_compares_each_run_with_the_profile_of_its_engine(profiles):
    runs = load_validation_runs([VLLM_RUN, HF_RUN])
    entries = validation_entries(runs, profiles)
    section = _section(_render(validation=entries), "Model validation")
    assert "val-vllm-cudagraphs-azure-conv-b16.json" in section and "vllm / cudagraphs" in section
    assert "33,724 ± 56" in section  # measured J of the vLLM run (33,723.9 ± 55.8)
    assert "35,136 ± 452" in section  # measured J of the HF run
    assert "67.4 ± 0.11" in section  # vLLM J / request
    vllm_rows, hf_rows = section.split("val-hf-eager")
    assert VLLM in vllm_rows and HF in hf_rows  # each run got the profile of its configuration
    errors = {e.name: {m.method: m for m in e.errors} for e in entries}
    vllm, hf = errors[VLLM_RUN.name], errors[HF_RUN.name]
    # Against the H100 measurements, the physical model as the engine batches is within 5%: the vLLM run
    # per request (−2.4%) and replaying its scheduler (+0.4%), the HF run per padded batch (−2.4%).
    assert abs(vllm["physical"].rel_error) < 0.05 and abs(vllm["physical-continuous"].rel_error) < 0.05
    assert abs(hf["physical-padded"].rel_error) < 0.05
    # Per request, a model does not know HF's padding: it misses most of the energy (−66%).
    assert hf["physical"].rel_error < -0.5 and hf["binned"].rel_error < -0.4
    # Each run's rows show each of its models with its signed error; padded / replayed only where due.
    for name, rows in ((VLLM_RUN.name, vllm_rows), (HF_RUN.name, hf_rows)):
        for m in errors[name].values():
            assert f"<td>{m.method}</td>" in rows and f"{100 * m.rel_error:+.1f}%" in rows
    assert "<td>physical-padded</td>" not in vllm_rows and "<td>physical-continuous</td>" not in hf_rows
    for method in ("physical", "binned", "p1", "parametric", "flops", "flops-50%"):
        assert f"<td>{method}" in section
    assert "No profile given" not in section


def test_validation_without_a_profile_shows_the_measurement_and_says_so():
    section = _section(_render(validation=validation_entries(load_validation_runs([VLLM_RUN]))), "Model")
    assert "33,724 ± 56" in section and "No profile given" in section
    assert "binned" not in section.split("</p>")[-1]


def test_validation_with_a_profile_of_another_engine_says_so(profiles):
    entries = validation_entries(load_validation_runs([HF_RUN]), {VLLM: profiles[VLLM]})
    assert entries[0].note.startswith("no profile of llama-3.1-8b hf eager")
    assert "compared with h100-llama-3.1-8b-vllm" in _render(validation=entries)


def test_validation_escapes_names_from_the_file(tmp_path, profiles):
    data = json.loads(VLLM_RUN.read_text())
    data["trace"] = EVIL
    evil = tmp_path / "evil&.json"
    evil.write_text(json.dumps(data))
    text = _render(validation=validation_entries(load_validation_runs([evil]), profiles))
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "evil&amp;.json" in text


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"format": 1}', '{"format": 2}', "__energy_string__", "__no_requests__"],
)
def test_a_bad_validation_file_is_refused_naming_it(tmp_path, content):
    if content.startswith("__"):
        data = json.loads(VLLM_RUN.read_text())
        if content == "__energy_string__":
            data["energy_j"] = "lots"
        else:
            data["input_tokens"] = data["output_tokens"] = []
        content = json.dumps(data)
    bad = tmp_path / "broken.json"
    bad.write_text(content)
    with pytest.raises(ConfigError, match="broken.json"):
        load_validation_runs([bad])


def test_recommendation_shows_choice_baselines_fastest_and_pareto(profiles):
    view = recommend_for_report(profiles, load_trace("azure-conv"), "ttft=2s,tpot=100ms")
    rec = view.recommendation
    assert rec.choice is not None
    section = _section(_render(recommendation=view), "Recommendation")
    assert "(modelled)" in section and "choice" in section and "closest" not in section
    assert f"{rec.choice.engine} / {rec.choice.mode}" in section
    assert rec.choice.label() in section
    assert "naive: HF eager" in section and "fastest" in section and "Pareto frontier" in section
    saving = 1 - rec.choice.energy_per_request_j / rec.baseline.energy_per_request_j
    assert f"{100 * saving:.1f}% [" in section
    assert section.count("<tr>") >= len(rec.baselines) + 1 + len(rec.pareto())


def test_an_impossible_slo_shows_the_closest_configuration(profiles):
    view = recommend_for_report(profiles, load_trace("azure-conv"), "ttft=1ms")
    assert view.recommendation.choice is None
    section = _section(_render(recommendation=view), "Recommendation")
    assert "No configuration meets the SLO" in section and "closest" in section
    assert view.recommendation.closest().label() in section


def test_recommendation_escapes_profile_and_trace_names(profiles):
    trace = load_trace("azure-conv")
    view = recommend_for_report({EVIL: profiles[VLLM]}, trace, "ttft=2s,tpot=100ms")
    text = _render(recommendation=view)
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_recommendation_refuses_a_bad_slo(profiles):
    with pytest.raises(ConfigError, match="bad SLO"):
        recommend_for_report(profiles, load_trace("azure-conv"), "ttft=fast")


# -- the command line ----------------------------------------------------------------------------


def test_report_command_adds_validation_and_recommendation(tmp_path):
    out = tmp_path / "r.html"
    args = ["report", "-o", str(out), "--trace", "azure-conv", "--profile", VLLM, "--profile", HF]
    args += ["--slo", "ttft=2s,tpot=100ms", "--validation", str(VLLM_RUN), "--validation", str(HF_RUN)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "<h2>Model validation" in text and "<h2>Recommendation (modelled)" in text
    assert "33,724 ± 56" in text and "35,136 ± 452" in text
    assert "Trace estimate" in text and "Energy model" in text
    assert "default-src 'none'" in text and "https://" not in text


def test_report_command_with_one_profile_keeps_working(tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", "-o", str(out), "--profile", VLLM, "--trace", "azure-code"])
    assert result.exit_code == 0, result.output
    assert "Trace estimate" in out.read_text() and "Recommendation" not in out.read_text()


def test_report_command_recommends_with_the_default_profile_and_an_impossible_slo(tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", "-o", str(out), "--trace", "azure-conv", "--slo", "ttft=1ms"])
    assert result.exit_code == 0, result.output
    assert "closest" in _section(out.read_text(), "Recommendation")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--validation", "{bad}"], "bad.json"),
        (["--validation", "{missing}"], "missing.json"),
        (["--trace", "azure-conv", "--slo", "ttft=2"], "bad SLO"),
        (["--trace", "azure-conv", "--slo", "speed=2s"], "unknown metric"),
        (["--slo", "ttft=2s"], "--slo needs --trace"),
        (["--rate", "3"], "--rate"),
    ],
)
def test_report_command_refuses_bad_input_and_writes_nothing(tmp_path, extra, message):
    (tmp_path / "bad.json").write_text('{"format": 1, "trace": "x"}')
    out = tmp_path / "r.html"
    args = [a.format(bad=tmp_path / "bad.json", missing=tmp_path / "missing.json") for a in extra]
    result = CliRunner().invoke(app, ["report", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()

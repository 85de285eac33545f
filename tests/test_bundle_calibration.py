"""benchmarks/bundle_calibration.py --append: new runs join a bundled data set only from its environment."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from llm_energy.report.sample import bundled_calibration_frame

STEM = "h100-llama-3.1-8b-vllm-cudagraphs"


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    """A copy of the bundled data set to append to."""
    folder = resources.files("llm_energy").joinpath("data", "calibration")
    out = tmp_path / "calibration"
    out.mkdir()
    for ext in ("csv", "json"):
        with resources.as_file(folder.joinpath(f"{STEM}.{ext}")) as src:
            shutil.copy(src, out / f"{STEM}.{ext}")
    return out


def _export(tmp_path: Path, name: str, **env: object) -> Path:
    """An `llm-energy export`-like CSV: two bundled rows as new runs, env_* columns as stored."""
    frame = bundled_calibration_frame(STEM).head(2).copy()
    frame["run_id"] = ["new-a", "new-b"]
    for key, value in env.items():
        frame[f"env_{key}"] = value
    path = tmp_path / name / "runs.csv"
    path.parent.mkdir()
    frame.to_csv(path, index=False)
    return path


def _args(csv: Path, out: Path) -> list[str]:
    return [str(csv), "--append", "--engine", "vllm", "--mode", "cudagraphs", "--stem", STEM,
            "--description", "d", "--out-dir", str(out)]  # fmt: skip


def test_append_adds_only_new_runs_from_the_same_environment(
    benchmark_script, tmp_path: Path, bundled: Path
) -> None:
    before = pd.read_csv(bundled / f"{STEM}.csv")
    csv = _export(tmp_path, "call9")
    assert benchmark_script("bundle_calibration").main(_args(csv, bundled)) == 0
    after = pd.read_csv(bundled / f"{STEM}.csv")
    assert len(after) == len(before) + 2
    assert list(after["run_id"].tail(2)) == ["new-a", "new-b"]
    as_text = pd.read_csv(bundled / f"{STEM}.csv", dtype=str).set_index("run_id")
    # counts stay integers beside the oom rows' blanks
    assert "." not in as_text.loc["new-a", "prefill_tokens"]
    assert (
        benchmark_script("bundle_calibration").main(_args(csv, bundled)) == 0
    )  # the same runs again: nothing stored twice
    assert len(pd.read_csv(bundled / f"{STEM}.csv")) == len(before) + 2


def test_append_refuses_runs_from_another_environment(
    benchmark_script, tmp_path: Path, bundled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (bundled / f"{STEM}.csv").read_bytes(), (bundled / f"{STEM}.json").read_bytes()
    csv = _export(tmp_path, "call9", driver="999.99")
    assert benchmark_script("bundle_calibration").main(_args(csv, bundled)) == 2
    assert "environment differs" in capsys.readouterr().err
    assert ((bundled / f"{STEM}.csv").read_bytes(), (bundled / f"{STEM}.json").read_bytes()) == before

"""Tests of llm_energy.store.export: formats, row counts and atomic replacement of the target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from llm_energy.errors import ConfigError
from llm_energy.records import Measurement, Phase, PhaseResult, RunResult
from llm_energy.store import Store, export_runs


def _run(run_id: str, *, status: str = "ok", batch_size: object = 4) -> RunResult:
    measurement = Measurement(
        duration_s=1.0,
        energy_j={"gpu:0": 700.0, "cpu:0": 50.0},
        uncertainty_j={"gpu:0": 7.0, "cpu:0": 10.0},
        source={"gpu:0": "measured", "cpu:0": "estimated"},
    )
    phases: dict[Phase, PhaseResult] = {}
    if status == "ok":
        phases["decode"] = PhaseResult("decode", measurement, repetitions=2, tokens=64)
    return RunResult(
        run_id=run_id,
        config={"model": "tiny", "engine": "simulated", "batch_size": batch_size},
        env={"gpu_name": "Simulated H100"},
        phases=phases,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "out of memory",
        created_at="2025-01-01T00:00:00+00:00",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "runs.db") as opened:
        for run in [_run("a"), _run("b"), _run("c", status="oom")]:
            opened.write_run(run)
        yield opened


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_csv_export_has_one_row_per_run(store: Store, tmp_path: Path) -> None:
    """CSV export writes one row per run and reads back with the same run_ids."""
    out = tmp_path / "out" / "runs.csv"
    assert export_runs(store, out) == 3
    back = pd.read_csv(out)
    assert list(back["run_id"]) == ["a", "b", "c"]
    assert back.loc[0, "decode_energy_j"] == pytest.approx(350.0)
    assert _leftovers(out.parent) == []


def test_parquet_export_has_one_row_per_run(store: Store, tmp_path: Path) -> None:
    """Parquet export writes one row per run, keeps the integer count columns and run_ids."""
    out = tmp_path / "runs.parquet"
    assert export_runs(store, out) == 3
    back = pd.read_parquet(out)
    assert list(back["run_id"]) == ["a", "b", "c"]
    assert back["decode_tokens"].tolist()[:2] == [64, 64]
    assert back["decode_tokens"].isna().tolist() == [False, False, True]


def test_status_filter_and_explicit_format(store: Store, tmp_path: Path) -> None:
    """fmt= overrides the suffix and status= limits the rows."""
    out = tmp_path / "runs.txt"
    assert export_runs(store, out, fmt="csv", status="oom") == 1
    assert list(pd.read_csv(out)["run_id"]) == ["c"]


def test_parquet_export_tolerates_mixed_type_config_values(tmp_path: Path) -> None:
    """A config key holding an int in one run and a string in another still exports to Parquet."""
    with Store(tmp_path / "runs.db") as store:
        store.write_run(_run("int", batch_size=4))
        store.write_run(_run("str", batch_size="auto"))
        out = tmp_path / "runs.pq"
        assert export_runs(store, out) == 2
    assert list(pd.read_parquet(out)["batch_size"]) == ["4", "auto"]


def test_unknown_suffix_is_a_config_error(store: Store, tmp_path: Path) -> None:
    """An unknown suffix raises ConfigError naming the allowed suffixes, and writes no file."""
    with pytest.raises(ConfigError, match=r"\.csv.*\.parquet"):
        export_runs(store, tmp_path / "runs.xlsx")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_runs(store, tmp_path / "runs.csv", fmt="json")  # type: ignore[arg-type]
    assert not (tmp_path / "runs.xlsx").exists() and not (tmp_path / "runs.csv").exists()


def test_export_replaces_an_existing_file(store: Store, tmp_path: Path) -> None:
    """Exporting over an existing file replaces its whole content and leaves no temporary file."""
    out = tmp_path / "runs.csv"
    out.write_text("old content that is much longer than nothing\n" * 1000)
    assert export_runs(store, out, status="ok") == 2
    assert list(pd.read_csv(out)["run_id"]) == ["a", "b"]
    assert _leftovers(tmp_path) == []


def test_interrupted_export_leaves_existing_file_intact(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If writing fails halfway, the existing target keeps its bytes and no temporary file remains."""
    out = tmp_path / "runs.csv"
    out.write_text("previous export\n")
    before = out.read_bytes()

    def write_half_then_fail(self: pd.DataFrame, buf: object, **kwargs: object) -> None:
        buf.write("run_id,created_at\na,")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    # pandas is the third-party edge here: make its writer stop partway through.
    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        export_runs(store, out)
    assert out.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_empty_store_exports_header_only(tmp_path: Path) -> None:
    """An empty store exports zero rows with the fixed columns."""
    with Store(tmp_path / "runs.db") as store:
        assert export_runs(store, tmp_path / "runs.csv") == 0
    back = pd.read_csv(tmp_path / "runs.csv")
    assert len(back) == 0 and list(back.columns)[:3] == ["run_id", "created_at", "status"]

"""The decode-profile script's smoke run: CPU, tiny model, profiler, estimated meter, every output written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.mark.slow
def test_smoke_measures_profiles_and_probes_every_variant(
    benchmark_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = benchmark_script("hf_decode_profile")
    result = script.main([str(tmp_path), "--smoke"])
    on_disk = json.loads((tmp_path / "hf_decode_profile.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(result["rows"], default=str))
    rows = {r["variant"]: r for r in on_disk["rows"]}
    assert list(rows) == ["eager", "compiled", "compiled-sdpa"] and on_disk["skipped"] == []
    for variant, row in rows.items():
        assert row["status"] == "ok", row.get("error")
        assert row["decode"]["ms_per_step"] > 0 and row["decode"]["j_per_step"] > 0
        assert row["decode"]["source"] == ["estimated"]
        assert row["output_tokens_per_request"] == 6
        assert row["tokens"] == rows["eager"]["tokens"]  # the fix changes no token
        assert row["profile"]["kernel_ms_per_step"] > 0
        assert (tmp_path / f"profile-{variant}.txt").read_text().startswith(f"variant {variant}:")
    assert rows["compiled"]["attention"] == "grouped_sdpa"
    assert rows["compiled-sdpa"]["attention"] == rows["eager"]["attention"] == "sdpa"
    # One decode step of the tiny model (2 layers, 4 heads, 2 K/V heads): only the old static path copies
    probes = {v: r["probe"] for v, r in rows.items()}
    assert probes["compiled-sdpa"]["repeat_kv_calls_per_step"] == 4
    assert probes["compiled"]["repeat_kv_calls_per_step"] == probes["eager"]["repeat_kv_calls_per_step"] == 0
    assert probes["compiled"]["layer0_calls"] == [
        {"op": "sdpa", "q": [1, 2, 2, 16], "k": [1, 2, 14, 16], "mask": [1, 1, 1, 14], "enable_gqa": False}
    ]
    assert probes["eager"]["layer0_calls"][0]["enable_gqa"] is True
    traffic = {v: r["traffic_model"]["kv_gb"] for v, r in rows.items()}
    assert traffic["compiled"] < traffic["eager"] < traffic["compiled-sdpa"]
    alone = on_disk["attention_alone"]
    assert all(alone[k]["ms_per_layer"] > 0 for k in ("eager", "static-sdpa", "static-grouped"))
    printed = capsys.readouterr().out
    assert "compiled-sdpa" in printed and "of eager's greedy tokens" in printed

    again = script.main([str(tmp_path), "--summary-only"])
    assert again["rows"] == on_disk["rows"]
    assert capsys.readouterr().out.startswith("hf decode profile on cpu: tiny")

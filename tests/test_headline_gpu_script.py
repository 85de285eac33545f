"""benchmarks/headline_gpu.py on the simulated engine: both arms on the same samples, the summary's saving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llm_energy.architectures import kv_cache_bytes, load_architecture
from llm_energy.validation.offline import ValidationRun


def test_static_and_continuous_runs_share_the_samples_and_the_summary_pairs_them(
    benchmark_script, tmp_path: Path
) -> None:
    module = benchmark_script("headline_gpu")
    common = ["--engine", "simulated", "--device", "cpu", "--sample", "20", "--idle-s", "1"]
    common += ["--out-dir", str(tmp_path)]
    # Static: the batch the memory model allows (the simulated engine refuses > 8: the run retries smaller).
    static = [
        *common,
        *["--batching", "static", "--batch", "auto", "--free-gib", "400"],
        "--options",
        '{"max_batch_size": 8}',
    ]
    assert module.main(["run", *static]) == 0
    assert module.main(["run", *common, "--batch", "256"]) == 0
    runs = {p.name: ValidationRun.load(p) for p in tmp_path.glob("val-*.json")}
    assert sorted(runs) == [
        f"val-simulated-default-{t}-b{b}.json" for t in ("azure-code", "azure-conv") for b in (256, 8)
    ]
    static_conv = runs["val-simulated-default-azure-conv-b8.json"]
    assert "out-of-memory at batch [20, 15, 11]" in static_conv.latency_note
    assert static_conv.input_tokens == runs["val-simulated-default-azure-conv-b256.json"].input_tokens
    assert max(static_conv.input_tokens) <= 8192 and max(static_conv.output_tokens) <= 512
    assert module.main(["summary", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["trace"] for r in rows] == ["azure-conv", "azure-code"]
    for r in rows:
        s = r["measured"]
        assert s["low"] <= s["saving"] <= s["high"]
        expected = 1 - r["optimised"]["j_per_request"] / r["baseline"]["j_per_request"]
        assert abs(s["saving"] - expected) < 1e-12
    assert "72.18%" in (tmp_path / "summary.md").read_text()


def test_largest_feasible_batch_is_bounded_by_the_longest_padded_batch(benchmark_script) -> None:
    module = benchmark_script("headline_gpu")
    arch = load_architecture("llama-3.1-8b")
    lin = np.array([100, 8000, 200, 300, 400, 500, 600, 700])
    lout = np.array([10, 20, 500, 30, 40, 50, 60, 70])
    kv = kv_cache_bytes(arch, 1, 1)
    # Memory for exactly two rows of the 8000-token prompt's prefill (KV + activations) and no more.
    two_rows = float(module.hf_peak_bytes(arch, np.array([2]), np.array([8000]), np.array([500]))[0])
    assert module.largest_feasible_batch(arch, lin, lout, two_rows) == 2
    assert module.largest_feasible_batch(arch, lin, lout, 1e18) == len(lin)
    assert module.largest_feasible_batch(arch, lin, lout, 1.0) == 1
    # Decode needs at least the KV cache of prompt + output.
    assert module.hf_peak_bytes(arch, np.array([1]), np.array([10]), np.array([5000]))[0] >= 5010 * kv


def test_plan_prints_a_batch_and_a_time_per_trace(benchmark_script, capsys) -> None:
    module = benchmark_script("headline_gpu")
    assert module.main(["plan", "--sample", "30"]) == 0
    out = capsys.readouterr().out
    assert "azure-conv: 30 of 18803 eligible" in out and "azure-code: 30 of 8792 eligible" in out
    assert "HF eager, both traces: modelled" in out


def test_a_trace_file_is_sampled_whole_and_names_its_run_by_its_stem(
    benchmark_script, tmp_path: Path
) -> None:
    """`--traces FILE --sample N` with N = every request runs the whole file; the output is named by the
    file's stem (a path in the name would point into folders that do not exist)."""
    from importlib import resources

    from llm_energy.workloads import load_trace

    csv = Path(str(resources.files("llm_energy").joinpath("data", "traces", "azure_code_2023.csv")))
    small = tmp_path / "code-head.csv"
    small.write_text("".join(csv.read_text().splitlines(keepends=True)[:31]))  # header + 30 requests
    assert len(load_trace(str(small))) == 30
    out = tmp_path / "out"
    module = benchmark_script("headline_gpu")
    args = ["run", "--engine", "simulated", "--device", "cpu", "--traces", str(small), "--sample", "30"]
    args += [
        "--max-input-tokens",
        "100000",
        "--max-output-tokens",
        "100000",
        "--batch",
        "256",
        "--idle-s",
        "1",
    ]
    assert module.main([*args, "--out-dir", str(out)]) == 0
    (run,) = out.glob("val-*.json")
    assert run.name == "val-simulated-default-code-head-b256.json"
    assert ValidationRun.load(run).requests == 30

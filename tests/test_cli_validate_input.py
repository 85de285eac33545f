"""`validate` and the trace loaders refuse bad input with exit 2 and one line naming the row or option.

A bad `--option` value used to be a JSONDecodeError traceback, a 10^23-token request was refused for
being "< 1" (it had wrapped around int64), and a run without GPU energy compared with a profile
printed a table of NaN.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.errors import ConfigError
from llm_energy.workloads import load_trace


def _text(output: str) -> str:
    return " ".join(output.split())


def _lengths_csv(path: Path, rows: list[tuple[object, object]]) -> Path:
    path.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{i},{o}\n" for i, o in rows))
    return path


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["validate", *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("100000000000000000000000", "1e+23"),
        ("1e23", "1e+23"),
        ("9223372036854775807", "9.223e+18"),
        ("18446744073709551615", "1.845e+19"),
        ("2147483648", "2.147e+09"),
    ],
)
def test_a_huge_token_count_is_named_as_too_large_with_its_row(tmp_path, value, shown):
    """Not "must be ≥ 1" (the int64 wrap-around), but too large, naming the 1-based row and column."""
    path = _lengths_csv(tmp_path / "t.csv", [(5, 5), (value, 10)])
    with pytest.raises(ConfigError) as info:
        load_trace(path)
    assert str(info.value) == (
        f"trace {path}: row 2, column 'num_prefill_tokens': input length {shown} is more than "
        "2,147,483,647 tokens (2**31 - 1)"
    )
    line = _refused(["--trace", str(path), "--engine", "simulated", "--sample", "1"])
    assert "row 2, column 'num_prefill_tokens': input length" in line


def test_a_jsonl_trace_with_a_huge_output_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"timestamp": t, "input_length": 5, "output_length": o})
            for t, o in ((0, 3), (1, 1e23))
        )
    )
    with pytest.raises(
        ConfigError, match=r"row 2, column 'output_length': output length 1e\+23 is more than"
    ):
        load_trace(path)


def test_a_sampled_request_beyond_the_context_names_its_row_and_the_options(tmp_path):
    path = _lengths_csv(tmp_path / "t.csv", [(20, 4), (2_000_000, 10), (12, 2)])
    line = _refused(["--trace", str(path), "--sample", "3", "--model", "tiny", "--device", "cpu"])
    assert line == (
        "error: trace t: row 2 has 2,000,000 input + 10 output tokens, more than the model's context of "
        "4,096 (1 such request(s) in the sample); sample shorter ones with --max-input-tokens / "
        "--max-output-tokens"
    )


def test_the_length_options_leave_the_long_request_out(tmp_path):
    """The fix the message names works: with --max-input-tokens the long row is not eligible."""
    path = _lengths_csv(tmp_path / "t.csv", [(20, 400), (2_000_000, 10), (12, 200)])
    args = ["--trace", str(path), "--engine", "simulated", "--sample", "2", "--max-input-tokens", "100"]
    result = CliRunner().invoke(app, ["validate", *args, "--idle-s", "0", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["eligible_requests"] == 2 and doc["energy_j"] > 0


def test_a_profile_comparison_without_a_gpu_is_refused_before_measuring(tmp_path):
    """On the CPU there is no GPU energy to compare: refused before the model loads, not a NaN table."""
    path = _lengths_csv(tmp_path / "t.csv", [(20, 4), (10, 3), (12, 2)])
    args = ["--trace", str(path), "--sample", "3", "--model", "tiny", "--device", "cpu", "--idle-s", "0"]
    line = _refused([*args, "--profile", "h100-llama-3.1-8b-vllm"])
    assert "--profile compares GPU energy, but this run would be on the CPU" in _text(line)
    assert "nan" not in line


def test_a_stored_run_without_gpu_energy_is_not_compared(tmp_path):
    """A run measured without a GPU (0 J) compared later is refused too, not divided by zero."""
    path = _lengths_csv(tmp_path / "t.csv", [(20, 4), (10, 3), (12, 2)])
    run = tmp_path / "run.json"
    args = ["--trace", str(path), "--sample", "3", "--model", "tiny", "--device", "cpu", "--idle-s", "0"]
    done = CliRunner().invoke(app, ["validate", *args, "--batch-size", "2", "--out", str(run)])
    assert done.exit_code == 0, done.output
    assert "no GPU energy measured (no GPU here" in _text(done.output)
    line = _refused(["--measured", str(run), "--profile", "h100-llama-3.1-8b-vllm"])
    assert "measured no GPU energy (0 J: it ran without a GPU)" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--option", "foo=test"], "engine 'simulated': invalid foo: Extra inputs are not permitted"),
        (["--option", "max_batch_size=[1,"], "--option max_batch_size: '[1,' is not valid JSON"),
        (["--option", "decode_step_s=-1"], "engine 'simulated': invalid decode_step_s"),
        (["--idle-s", "nan"], "--idle-s must be a number of seconds >= 0 and <= 3600, got nan"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--profile", "no-such-profile"], "no-such-profile"),
        (["--sample", "10000000"], "requests are; cannot sample 10000000"),
    ],
)
def test_bad_validate_options_name_the_option(args, message):
    line = _refused(["--engine", "simulated", *args])
    assert message in _text(line)

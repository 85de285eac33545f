"""Every bad input to `measure` is exit 2 with one line naming what is wrong: no traceback, no hang.

Typer also exits 2 on a mistyped option, so each test checks the message as well as the code, and that
nothing was stored.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_energy.cli import app
from llm_energy.engines import ENGINES

TINY_CPU = shlex.split(
    "measure --model tiny --device cpu --batch-size 1 --input-len 16 --output-len 4 "
    "--window-s 0.3 --idle-s 0.1"
)
SIM = shlex.split("measure --engine simulated --model sim --batch-size 2 --input-len 32 --output-len 8")


def _text(output: str) -> str:
    return " ".join(output.split())


def _refused(args: list[str], db: Path, env: dict[str, str] | None = None) -> str:
    """Run `args`; assert exit 2, one `error:` line, no traceback, nothing stored; return the line."""
    result = CliRunner().invoke(app, [*args, "--db", str(db)], env=env)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert not db.exists(), "a refused run must not create or write the database"
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window-s", "nan"], "--window-s must be a number of seconds > 0 and <= 3600, got nan"),
        (["--window-s", "inf"], "--window-s must be a number of seconds > 0 and <= 3600, got inf"),
        (["--window-s", "-1"], "--window-s must be a number of seconds > 0 and <= 3600, got -1.0"),
        (["--window-s", "0"], "--window-s must be a number of seconds > 0"),
        (["--idle-s", "nan"], "--idle-s must be a number of seconds >= 0 and <= 3600, got nan"),
        (["--idle-s", "-5"], "--idle-s must be a number of seconds >= 0 and <= 3600, got -5.0"),
        (["--batch-size", str(10**12)], "batch_size 1000000000000 x (input_len 16 + output_len 4)"),
        (["--batch-size", str(10**23)], "tokens in one batch; at most 2,147,483,647"),
        (["--dtype", "int3"], "invalid dtype: dtype must be one of bfloat16, float16, float32, got 'int3'"),
        (["--device", "tpu"], "invalid device: device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        (["--cpu-tdp-w", "nan"], "--cpu-tdp-w must be a finite number of watts > 0, got nan"),
        (["--cpu-tdp-w", "-5"], "--cpu-tdp-w must be a finite number of watts > 0, got -5.0"),
        (["--repeats", "0"], "--repeats must be >= 1 (got 0)"),
        (["--seed", "-1"], "invalid seed: Input should be greater than or equal to 0"),
        (["--option", "foo=test"], "engine 'hf': invalid foo: Extra inputs are not permitted"),
        (["--option", "x=[1,"], "--option x: '[1,' is not valid JSON"),
        (["--option", "novalue"], "--option must be KEY=VALUE, got 'novalue'"),
        (["--option", "top_k=2", "--option", "top_k=3"], "--option top_k given twice"),
        (["--option", "temperature=1e999"], "--option: 1e999 is not a finite number"),
        (["--option", "temperature=0"], "engine 'hf': invalid temperature: temperature must be > 0, got 0"),
        (["--option", "decoding=sample", "--decoding", "greedy"], "--option decoding=... and --decoding"),
        (["--option", "device=cuda"], "option 'device' is the point's own field"),
    ],
)
def test_bad_measure_input_is_one_clear_line_and_exit_2(tmp_path, args, message):
    line = _refused([*TINY_CPU, *args], tmp_path / "r.db")
    assert message in _text(line)


def test_a_bad_cpu_tdp_variable_is_named(tmp_path):
    line = _refused(TINY_CPU, tmp_path / "r.db", env={"LLM_ENERGY_CPU_TDP_W": "abc"})
    assert "LLM_ENERGY_CPU_TDP_W must be a number of watts > 0, got 'abc'" in line


def test_a_cuda_device_that_is_not_there_is_named(tmp_path):
    """`--device cuda:N` beyond the GPUs torch sees is refused before anything is measured."""
    torch = pytest.importorskip("torch")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    line = _refused([*TINY_CPU, "--device", f"cuda:{count}"], tmp_path / "r.db")
    assert f"device 'cuda:{count}' requested but torch sees" in line


def test_a_huge_batch_of_the_simulated_engine_is_refused_before_the_store(tmp_path):
    line = _refused([*SIM, "--batch-size", str(10**23)], tmp_path / "r.db")
    assert "tokens in one batch" in line


def test_vllm_options_are_checked_against_its_config_before_anything_runs(tmp_path):
    """`--option` is validated by the engine's own config (as a sweep spec's engine entry), vLLM included."""
    line = _refused(
        ["measure", "--engine", "vllm", "--mode", "eager", "--model", "tiny", "--option", "max_num_seqs=0"],
        tmp_path / "r.db",
    )
    assert "engine 'vllm': invalid max_num_seqs: Input should be greater than 0" in line
    line = _refused(
        ["measure", "--engine", "vllm", "--model", "tiny", "--option", "enable_prefix_caching=true"],
        tmp_path / "r.db",
    )
    assert "prefix caching must stay off" in _text(line)


def test_option_values_reach_the_engine(tmp_path):
    """`--option KEY=VALUE` sets the engine's option: the simulated engine's batch limit and step time."""
    runner = CliRunner()
    db = str(tmp_path / "r.db")
    ok = runner.invoke(app, [*SIM, "--option", "decode_step_s=0.02", "--db", db, "--json"])
    assert ok.exit_code == 0, ok.output
    (run,) = json.loads(ok.stdout)
    assert run["config"]["options"] == {"decode_step_s": 0.02}
    assert run["phases"]["decode"]["duration_s"] == pytest.approx(7 * 0.02)  # output 8: 7 decode steps
    small = runner.invoke(app, [*SIM, "--option", "max_batch_size=1", "--db", db])
    assert small.exit_code == 1, small.output
    assert "oom: simulated: batch 2 > 1" in _text(small.output)


def test_measure_help_lists_every_registered_engine():
    result = CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ENGINES:
        assert name in result.output
    assert "--option" in result.output

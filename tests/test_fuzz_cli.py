"""Fuzzing the command line with generated garbage: no traceback ever, exit code 0, 1 or 2.

Hypothesis writes trace files (CSV and JSONL, near the known layouts and far from them), sweep specs
(YAML), profile files (JSON) and SLO strings, and feeds them to `estimate --trace`, `sweep --dry-run`,
`estimate --profile` and `recommend --slo` through typer's CliRunner. A bad input may be refused (exit
2) and a run may fail (exit 1), but an exception must never escape as a traceback. A profile that
fails to load gives exit 2, and that is all the profile test asserts (the format is being rewritten).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from llm_energy.cli import app

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a failure is reproducible in CI
    database=None,  # nothing written into the working tree
)

LAYOUTS = [
    ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    ["timestamp_ms", "input_length", "output_length"],
    ["timestamp", "input_length", "output_length"],
    ["num_prefill_tokens", "num_decode_tokens"],
]
"""The column sets the trace loaders recognise (Azure, Mooncake CSV and JSONL, length lists)."""

SMALL_TRACE = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"2023-11-16 18:15:{i:02d}.0000000,{100 + 37 * i},{20 + 3 * i}\n" for i in range(20)
)
"""A valid 20-request Azure-layout trace, so `recommend` searches quickly."""


def _no_traceback(result: Result) -> None:
    """Exit 0, 1 or 2, and any exception is the CLI's own exit, never an escaped error."""
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not escaped, f"{type(result.exception).__name__}: {result.exception}\n{result.output}"
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output


# -- generated values ------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 128, 2**31, 2**63, -1]),
)
words = st.text(alphabet=string.printable, max_size=12)
cells = st.one_of(
    numbers.map(str), words, st.just(""), st.sampled_from(["2023-11-16 18:15:46.6805900", "NaN"])
)


def _good_cell(column: str, row: int, draw: st.DrawFn) -> str:
    """A valid value of a known column: increasing times, token counts from 1 up."""
    if column == "TIMESTAMP":
        return f"2023-11-16 18:{row // 60:02d}:{row % 60:02d}.{draw(st.integers(0, 9999999)):07d}"
    if column.startswith("timestamp"):
        return str(1000 * row + draw(st.integers(0, 999)))
    return str(draw(st.integers(1, 9000)))


@st.composite
def csv_traces(draw: st.DrawFn) -> str:
    """Mostly a known layout with valid rows and a few corrupted cells; sometimes any columns at all."""
    known = draw(st.integers(0, 4)) > 0
    header = draw(st.sampled_from(LAYOUTS)) if known else draw(st.lists(words, min_size=1, max_size=4))
    rows = []
    for i in range(draw(st.integers(0, 6))):
        row = [_good_cell(c, i, draw) if known else draw(cells) for c in header]
        if draw(st.integers(0, 3)) == 0:  # corrupt one cell, or add or drop one
            k = draw(st.integers(0, len(row)))
            row = row[:k] + [draw(cells)] + row[k + draw(st.integers(0, 1)) :]
        rows.append(row)
    lines = [",".join(header), *(",".join(row) for row in rows)]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, words),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(words, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def jsonl_traces(draw: st.DrawFn) -> str:
    keys = draw(st.sampled_from(LAYOUTS))
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            record = {
                k: draw(st.one_of(numbers, words, st.none())) for k in keys if draw(st.booleans()) or True
            }
            lines.append(json.dumps(record))
        else:
            lines.append(draw(st.one_of(words, json_values.map(json.dumps))))
    return "\n".join(lines) + "\n"


SPEC_KEYS = [
    "name",
    "models",
    "engines",
    "batch_sizes",
    "input_lens",
    "output_lens",
    "repeats",
    "seed",
    "dtype",
    "device",
    "init",
    "window_s",
    "idle_s",
    "time_limit_s",
    "gpu_clocks_mhz",
    "power_limits_w",
    "allow_gpu_settings",
    "tp_sizes",
]
small_ints = st.one_of(st.integers(-3, 300), st.sampled_from([0, 2**31, 10**12]))
"""Counts and sizes around the edges: negative, zero, small, and past what any engine holds."""


@st.composite
def sweep_specs(draw: st.DrawFn) -> str:
    """Mostly valid specs of the simulated engine, often with a field or option wrong; sometimes any text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60))
    lengths = st.lists(st.integers(1, 2048), min_size=1, max_size=3)
    engine = st.fixed_dictionaries(
        {"engine": st.sampled_from(["simulated", "simulated", "hf", "vllm", "hf-paged", "warp"])},
        optional={
            "mode": st.sampled_from(["eager", "cudagraphs", "default", "paged", "turbo"]),
            "max_batch_size": small_ints,
            "max_num_seqs": small_ints,
            "device": words,
        },
    )
    spec: dict[str, object] = {
        "models": draw(
            st.lists(st.sampled_from(["sim", "sim", "tiny", "llama-3.1-8b", "nope"]), min_size=1, max_size=2)
        ),
        "engines": draw(st.lists(engine, min_size=1, max_size=2)),
        "batch_sizes": draw(lengths),
        "input_lens": draw(lengths),
        "output_lens": draw(lengths),
    }
    if draw(st.booleans()):  # an axis at the edges: empty, negative, zero or huge
        spec[draw(st.sampled_from(["batch_sizes", "input_lens", "output_lens"]))] = draw(
            st.lists(small_ints, max_size=3)
        )
    if draw(st.booleans()):  # any field set to any value
        spec[draw(st.sampled_from(SPEC_KEYS))] = draw(json_values)
    return yaml.safe_dump(spec)


slos = st.one_of(
    st.text(alphabet="tfpoe2=,.ms0123456789 -+_naiTFPOE", max_size=30),
    st.lists(
        st.tuples(
            st.sampled_from(["ttft", "tpot", "e2e", "TTFT", "x", ""]),
            st.one_of(numbers.map(str), words),
            st.sampled_from(["s", "ms", "", "us", "h"]),
        ),
        max_size=3,
    ).map(lambda parts: ",".join(f"{m}={v}{u}" for m, v, u in parts)),
    st.text(max_size=30),
)


# -- the tests -------------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@FUZZ
@given(text=csv_traces())
def test_estimate_of_a_garbage_csv_trace(runner, tmp_path_factory, text):
    path = tmp_path_factory.mktemp("csv") / "trace.csv"
    path.write_text(text)
    _no_traceback(runner.invoke(app, ["estimate", "--trace", str(path), "--json"]))


@FUZZ
@given(text=jsonl_traces())
def test_estimate_of_a_garbage_jsonl_trace(runner, tmp_path_factory, text):
    path = tmp_path_factory.mktemp("jsonl") / "trace.jsonl"
    path.write_text(text)
    _no_traceback(runner.invoke(app, ["estimate", "--trace", str(path), "--json"]))


@FUZZ
@given(text=sweep_specs())
def test_sweep_dry_run_of_a_garbage_spec(runner, tmp_path_factory, text):
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(text)
    _no_traceback(runner.invoke(app, ["sweep", str(path), "--dry-run"], env={"COLUMNS": "200"}))


@FUZZ
@given(doc=st.one_of(json_values.map(json.dumps), st.text(max_size=80), st.binary(max_size=40).map(repr)))
def test_estimate_with_a_garbage_profile_exits_2(runner, tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    path.write_text(doc)
    result = runner.invoke(app, ["estimate", "--trace", "azure-code", "--profile", str(path)])
    _no_traceback(result)
    assert result.exit_code == 2, result.output


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "small.csv"
    path.write_text(SMALL_TRACE)
    return path


@FUZZ
@given(slo=slos)
def test_recommend_with_a_garbage_slo(runner, small_trace, slo):
    _no_traceback(runner.invoke(app, ["recommend", "--trace", str(small_trace), "--slo", slo]))

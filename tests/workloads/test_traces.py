"""Trace loading: bundled Azure traces, every layout, streaming, and one clear error per bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_energy.errors import ConfigError
from llm_energy.records import Request
from llm_energy.workloads import BUNDLED_TRACES, Trace, iter_trace_chunks, load_trace

# From /work/shared/data/traces/SOURCES.md (and data/traces/NOTICE.md).
SHA256 = {
    "azure-conv": "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
    "azure-code": "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
}
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(spec: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_trace(spec, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# --- bundled traces ------------------------------------------------------------------------------


def test_bundled_azure_conv_matches_its_published_statistics():
    """azure-conv: 19,366 rows, input median 1020, output median 129, 3,501.7 s at 5.53 req/s."""
    trace = load_trace("azure-conv")
    s = trace.summary()
    assert len(trace) == s.count == 19_366
    assert (s.input_tokens.min, s.input_tokens.p50, s.input_tokens.max) == (2, 1020, 14050)
    assert (s.output_tokens.min, s.output_tokens.p50, s.output_tokens.max) == (7, 129, 1000)
    assert s.input_tokens.mean == pytest.approx(1154.7, abs=0.05)
    assert s.input_tokens.p90 == pytest.approx(2734.5)
    assert s.output_tokens.p99 == pytest.approx(601)
    assert s.duration_s == pytest.approx(3501.7, abs=0.05)
    assert s.rate_per_s == pytest.approx(5.53, abs=0.005)
    assert trace.name == trace.source == "azure-conv"


def test_bundled_azure_code_matches_its_published_statistics():
    """azure-code: 8,819 rows over 3,435.9 s at 2.57 req/s; output median 13."""
    s = load_trace("azure-code").summary()
    assert s.count == 8_819
    assert s.input_tokens.p50 == 1469
    assert s.output_tokens.p50 == 13
    assert s.duration_s == pytest.approx(3435.9, abs=0.05)
    assert s.rate_per_s == pytest.approx(2.57, abs=0.005)


@pytest.mark.parametrize("name", sorted(SHA256))
def test_bundled_files_are_unchanged_copies(name):
    """The bundled bytes hash to the sha256 recorded in SOURCES.md, and NOTICE.md states that sum."""
    assert hashlib.sha256(BUNDLED_TRACES[name].read_bytes()).hexdigest() == SHA256[name]
    notice = files("llm_energy").joinpath("data", "traces", "NOTICE.md").read_text()
    assert SHA256[name] in notice
    assert "CC-BY 4.0" in notice


def test_azure_timestamps_keep_sub_second_precision_of_the_first_rows():
    """Arrivals of azure-conv's first rows equal the hand-computed differences of their timestamps.

    Rows 1-3 read 18:15:46.6805900, 18:15:50.9951690 and 18:15:51.2224670.
    """
    trace = load_trace("azure-conv")
    assert trace.arrival_s is not None
    assert trace.arrival_s[:3].tolist() == pytest.approx([0.0, 4.3145790, 4.5418770], abs=1e-9)
    assert trace.requests()[:2] == [
        Request(374, 44, 0.0),
        Request(396, 109, pytest.approx(4.314579, abs=1e-9)),
    ]


def test_seventh_fractional_digit_is_parsed_across_midnight(tmp_path):
    """100 ns digits survive parsing, also when the trace crosses midnight."""
    path = write(
        tmp_path,
        AZURE_HEADER + "2023-11-16 23:59:59.9999997,10,5\n"
        "2023-11-16 23:59:59.9999998,11,6\n"
        "2023-11-17 00:00:00.0000001,12,7\n"
        "2023-11-17 00:00:01.2345679,13,8\n",
    )
    trace = load_trace(path)
    assert trace.arrival_s is not None
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 1e-7, 4e-7, 1.2345682], abs=1e-12)
    assert trace.input_tokens.dtype == np.int64 and trace.arrival_s.dtype == np.float64


# --- other layouts ------------------------------------------------------------------------------


def test_mooncake_csv_timestamps_are_milliseconds(tmp_path):
    """Mooncake CSV: timestamp_ms becomes seconds from the first request; hash_ids are ignored."""
    path = write(
        tmp_path,
        "timestamp_ms,input_length,output_length,hash_ids\n"
        "1000,40160,6,0 1 2\n1000,36640,4,3 4\n3500,13,1,5\n",
    )
    trace = load_trace(path)
    assert trace.arrival_s is not None
    assert trace.arrival_s.tolist() == [0.0, 0.0, 2.5]
    assert trace.input_tokens.tolist() == [40160, 36640, 13]
    assert trace.output_tokens.tolist() == [6, 4, 1]


def test_mooncake_jsonl_is_detected_by_content(tmp_path):
    """Mooncake JSONL (`timestamp` in ms) is recognised without a telling extension."""
    lines = [
        {"timestamp": 0, "input_length": 100, "output_length": 10, "hash_ids": [0, 1]},
        {"timestamp": 1500, "input_length": 200, "output_length": 20, "hash_ids": [2]},
        {"timestamp": 1501, "input_length": 300, "output_length": 30, "hash_ids": []},
    ]
    path = write(tmp_path, "".join(json.dumps(x) + "\n" for x in lines), "trace.txt")
    trace = load_trace(path)
    assert trace.arrival_s is not None
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 1.5, 1.501])
    assert trace.input_tokens.tolist() == [100, 200, 300]


def test_length_list_has_no_arrival_times(tmp_path):
    """A vidur/sarathi length list gives token counts and arrival_s None."""
    path = write(
        tmp_path,
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n74,918,992,0.08\n3,2,5,1.5\n",
    )
    trace = load_trace(path)
    assert trace.arrival_s is None
    assert trace.requests() == [Request(74, 918), Request(3, 2)]
    assert trace.summary().duration_s is None and trace.summary().rate_per_s is None


def test_generic_parquet_with_named_columns_and_numeric_seconds(tmp_path):
    """Any Parquet file loads with --input-col/--output-col/--time-col; numeric times are seconds."""
    path = tmp_path / "t.parquet"
    table = pa.table(
        {"t": [10.0, 10.5, 12.25], "prompt": [5, 6, 7], "gen": [1, 2, 3], "other": ["a", "b", "c"]}
    )
    pq.write_table(table, path)
    trace = load_trace(path, input_col="prompt", output_col="gen", time_col="t")
    assert trace.arrival_s is not None
    assert trace.arrival_s.tolist() == [0.0, 0.5, 2.25]
    assert trace.input_tokens.tolist() == [5, 6, 7]
    assert load_trace(path, input_col="prompt", output_col="gen").arrival_s is None


def test_generic_time_column_of_datetimes_in_parquet_and_csv(tmp_path):
    """A named time column holding datetimes (Parquet timestamps or ISO strings) becomes seconds."""
    stamps = pd.to_datetime(
        ["2024-01-01 00:00:00", "2024-01-01 00:00:01.25", "2024-01-01 00:01:00"], format="ISO8601"
    )
    frame = pd.DataFrame({"when": stamps, "in": [1, 2, 3], "out": [4, 5, 6]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    for name in ("t.parquet", "t.csv"):
        trace = load_trace(tmp_path / name, input_col="in", output_col="out", time_col="when")
        assert trace.arrival_s is not None
        assert trace.arrival_s.tolist() == [0.0, 1.25, 60.0], name


# --- bad input: one ConfigError naming the problem, row and column -----------------------------


def test_missing_file_and_directory_are_config_errors(tmp_path):
    """A path that does not exist, or is a folder, is a ConfigError that lists the bundled names."""
    message = config_error(tmp_path / "nope.csv")
    assert "not found" in message and "azure-conv" in message
    assert "not a file" in config_error(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_config_error(tmp_path):
    """A file without read permission is a ConfigError, not an OSError."""
    path = write(tmp_path, AZURE_HEADER + "2023-11-16 18:15:46.6805900,1,1\n")
    path.chmod(0)
    assert "cannot read" in config_error(path)


def test_empty_and_header_only_files_are_config_errors(tmp_path):
    """An empty file and a header without rows each give a ConfigError saying so."""
    assert "is empty" in config_error(write(tmp_path, "", "empty.csv"))
    assert "no data rows" in config_error(write(tmp_path, AZURE_HEADER, "header.csv"))


def test_corrupt_parquet_is_a_config_error(tmp_path):
    """A file with Parquet's magic bytes but no valid content is a ConfigError."""
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 64)
    assert "cannot read" in config_error(path)


def test_unknown_columns_list_what_was_found_and_what_is_expected(tmp_path):
    """Columns of no known layout: the error lists them, the known layouts and the --input-col flags."""
    message = config_error(write(tmp_path, "a,b,c\n1,2,3\n"))
    assert "['a', 'b', 'c']" in message
    assert "ContextTokens" in message and "input_length" in message and "num_prefill_tokens" in message
    assert "--input-col" in message and "--output-col" in message


def test_named_column_that_does_not_exist(tmp_path):
    """A --input-col naming an absent column is a ConfigError naming the column and those found."""
    message = config_error(write(tmp_path, "a,b\n1,2\n"), input_col="x", output_col="b")
    assert "'x'" in message and "--input-col" in message and "['a', 'b']" in message


@pytest.mark.parametrize(
    ("row3", "problem"),
    [
        (
            "2023-11-16 18:15:48.0,abc,5",
            r"row 3, column 'ContextTokens': input length is not a number: 'abc'",
        ),
        ("2023-11-16 18:15:48.0,,5", r"row 3, column 'ContextTokens': input length is missing"),
        ("2023-11-16 18:15:48.0,-4,5", r"row 3, column 'ContextTokens': input length must be ≥ 1, got -4"),
        ("2023-11-16 18:15:48.0,12,0", r"row 3, column 'GeneratedTokens': output length must be ≥ 1, got 0"),
        (
            "2023-11-16 18:15:48.0,12.5,3",
            r"row 3, column 'ContextTokens': input length is not a whole number",
        ),
        ("2023-11-16 18:15:48.0,12,", r"row 3, column 'GeneratedTokens': output length is missing"),
        ("yesterday,12,3", r"row 3, column 'TIMESTAMP': cannot parse timestamp 'yesterday'"),
        ("2023-11-16 18:15:46.0,12,3", r"row 3, column 'TIMESTAMP': timestamps are not sorted"),
    ],
)
def test_bad_value_names_row_and_column(tmp_path, row3, problem):
    """Each bad value is one ConfigError with the 1-based data row (header excluded) and the column."""
    text = AZURE_HEADER + "2023-11-16 18:15:46.5,10,2\n2023-11-16 18:15:47.0,11,3\n" + row3 + "\n"
    message = config_error(write(tmp_path, text))
    assert re.search(problem, message), message


@pytest.mark.parametrize("bad", ["{oops", "[1, 2]"])
def test_bad_json_line_names_its_row(tmp_path, bad):
    """A JSON Lines row that is not a JSON object is reported with its row number."""
    good = json.dumps({"timestamp": 0, "input_length": 1, "output_length": 1})
    assert "row 2 is not a JSON object" in config_error(
        write(tmp_path, f"{good}\n{bad}\n{good}\n", "t.jsonl")
    )


def test_bad_value_in_a_later_chunk_gives_its_global_row(tmp_path):
    """When streaming, row numbers count over the whole file, not within the chunk."""
    rows = [f"{i},{i + 1},{i + 2}" for i in range(25)]
    rows[21] = "21,22,-1"
    path = write(tmp_path, "t,in,out\n" + "\n".join(rows) + "\n")
    chunks = iter_trace_chunks(path, chunk_rows=10, input_col="in", output_col="out", time_col="t")
    with pytest.raises(ConfigError, match=r"row 22, column 'out': output length must be ≥ 1, got -1"):
        list(chunks)


def test_unsorted_across_a_chunk_boundary_is_detected(tmp_path):
    """A time that goes backwards exactly at a chunk boundary is reported at its global row."""
    times = [0, 1, 2, 3, 2.5, 4]
    path = write(tmp_path, "t,in,out\n" + "".join(f"{t},1,1\n" for t in times))
    with pytest.raises(ConfigError, match=r"row 5, column 't': timestamps are not sorted"):
        list(iter_trace_chunks(path, chunk_rows=4, input_col="in", output_col="out", time_col="t"))


def test_file_problems_surface_before_iteration(tmp_path):
    """iter_trace_chunks checks the file and its columns when called, not on the first chunk."""
    with pytest.raises(ConfigError, match="not found"):
        iter_trace_chunks(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="chunk_rows"):
        iter_trace_chunks("azure-conv", chunk_rows=0)


# --- Trace operations ---------------------------------------------------------------------------


def small_trace() -> Trace:
    return Trace("t", np.arange(1, 11), np.arange(11, 21), np.arange(10, dtype=np.float64) * 2.0, "mem")


def test_window_selects_half_open_interval_and_rebases():
    """window(a, d) keeps arrivals in [a, a + d), the first at 0 s, with their token counts."""
    w = small_trace().window(4.0, 6.0)  # arrivals 4, 6, 8 (10 is excluded)
    assert w.input_tokens.tolist() == [3, 4, 5]
    assert w.arrival_s is not None and w.arrival_s.tolist() == [0.0, 2.0, 4.0]
    assert len(small_trace().window(100.0, 5.0)) == 0


def test_scale_time_divides_arrivals():
    """scale_time(2) halves every arrival time (twice the rate) and leaves the tokens alone."""
    fast = small_trace().scale_time(2.0)
    assert fast.arrival_s is not None and fast.arrival_s.tolist() == (np.arange(10) * 1.0).tolist()
    assert fast.summary().rate_per_s == pytest.approx(2 * small_trace().summary().rate_per_s)
    with pytest.raises(ConfigError):
        small_trace().scale_time(0)


def test_sample_is_reproducible_ordered_and_without_replacement():
    """The same seed gives the same sample, another seed a different one; order kept, no repeats."""
    trace = load_trace("azure-code")
    a = trace.sample(500, np.random.default_rng(7))
    b = trace.sample(500, np.random.default_rng(7))
    c = trace.sample(500, np.random.default_rng(8))
    assert a.arrival_s is not None and c.arrival_s is not None
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.input_tokens, b.input_tokens)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert a.arrival_s[0] == 0.0 and bool((np.diff(a.arrival_s) >= 0).all())
    assert len(a) == 500
    with pytest.raises(ConfigError):
        trace.sample(len(trace) + 1, np.random.default_rng(0))


def test_head_and_operations_needing_times():
    """head(n) takes the first n requests; window/scale_time on a trace without times are ConfigErrors."""
    assert small_trace().head(3).input_tokens.tolist() == [1, 2, 3]
    untimed = Trace("u", np.array([1, 2]), np.array([3, 4]))
    with pytest.raises(ConfigError, match="no arrival times"):
        untimed.window(0, 1)
    with pytest.raises(ConfigError, match="no arrival times"):
        untimed.scale_time(2)


def test_trace_rejects_inconsistent_columns():
    """A Trace never holds mismatched lengths, token counts < 1 or times that go backwards."""
    with pytest.raises(ConfigError):
        Trace("x", np.array([1, 2]), np.array([1]))
    with pytest.raises(ConfigError):
        Trace("x", np.array([0]), np.array([1]))
    with pytest.raises(ConfigError):
        Trace("x", np.array([1, 1]), np.array([1, 1]), np.array([1.0, 0.5]))


# --- streaming -----------------------------------------------------------------------------------


def test_streaming_in_chunks_equals_loading_whole(tmp_path):
    """300,000 rows in chunks of 100,000: same token totals and the same arrival_s as one load."""
    rng = np.random.default_rng(0)
    n = 300_000
    start = np.datetime64("2023-11-16T18:15:46.6805900", "ns")
    stamps = np.datetime_as_string(start + np.cumsum(rng.integers(0, 2_000_000, n)) * 100, unit="ns")
    frame = pd.DataFrame(
        {
            "TIMESTAMP": np.char.replace(stamps.astype("U29"), "T", " ").astype("U27"),
            "ContextTokens": rng.integers(1, 8000, n),
            "GeneratedTokens": rng.integers(1, 1000, n),
        }
    )
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    whole = load_trace(path)
    chunks = list(iter_trace_chunks(path, chunk_rows=100_000))
    assert [len(c) for c in chunks] == [100_000] * 3
    assert (
        sum(int(c.input_tokens.sum()) for c in chunks)
        == int(whole.input_tokens.sum())
        == frame.ContextTokens.sum()
    )
    assert sum(int(c.output_tokens.sum()) for c in chunks) == int(whole.output_tokens.sum())
    streamed = np.concatenate([c.arrival_s for c in chunks if c.arrival_s is not None])
    assert whole.arrival_s is not None
    assert np.array_equal(streamed, whole.arrival_s)
    assert streamed[0] == 0.0


def test_parquet_streams_by_batches_with_global_arrivals(tmp_path):
    """A Parquet file streamed in small batches concatenates to the whole file."""
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({"t": np.arange(50, dtype=np.float64) + 5, "i": np.arange(1, 51), "o": np.ones(50, int)}),
        path,
        row_group_size=16,
    )
    chunks = list(iter_trace_chunks(path, chunk_rows=7, input_col="i", output_col="o", time_col="t"))
    assert sum(len(c) for c in chunks) == 50
    arrivals = np.concatenate([c.arrival_s for c in chunks if c.arrival_s is not None])
    assert arrivals.tolist() == list(range(50))


def test_bundled_path_and_name_load_the_same(tmp_path):
    """Loading a bundled trace by name or by its file path gives the same columns."""
    with as_file(BUNDLED_TRACES["azure-code"]) as path:
        by_path = load_trace(path)
    by_name = load_trace("azure-code")
    assert np.array_equal(by_path.input_tokens, by_name.input_tokens)
    assert by_path.name == "azure_code_2023"


def test_importing_workloads_loads_neither_torch_nor_pandas():
    """`import llm_energy.workloads` stays light: pandas loads on the first read, torch never."""
    code = (
        "import sys, llm_energy\n"
        "before = set(sys.modules)\n"
        "import llm_energy.workloads\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('torch', 'pandas')))\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["[]", "False"]

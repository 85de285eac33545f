"""A sweep spec and `measure` agree: device `auto` by default, `name:` optional, bad values named by line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_energy.architectures import load_architecture
from llm_energy.cli import app
from llm_energy.engines.devices import resolve_device
from llm_energy.errors import ConfigError
from llm_energy.store import Store
from llm_energy.sweep.spec import Point, SweepSpec, load_spec, make_point, parse_spec

MINIMAL = """\
models: [sim]
engines: [{engine: simulated}]
batch_sizes: [2]
input_lens: [32]
output_lens: [8]
window_s: 1.0
idle_s: 0
"""


def test_spec_and_point_default_to_auto_like_measure():
    """`device` defaults to auto everywhere: the spec, a point, and `measure --device`."""
    spec = parse_spec(MINIMAL)
    assert spec.device == "auto"
    assert Point(model="sim").device == "auto"
    assert {p.device for p in spec.points()} == {"auto"}


def test_name_defaults_to_the_file_name(tmp_path):
    path = tmp_path / "my-grid.yaml"
    path.write_text(MINIMAL)
    assert load_spec(path).name == "my-grid"
    assert parse_spec("name: given\n" + MINIMAL).name == "given"


def test_a_sweep_without_name_stores_the_file_name(tmp_path):
    path = tmp_path / "nameless.yaml"
    path.write_text(MINIMAL)
    db = tmp_path / "r.db"
    result = CliRunner().invoke(app, ["sweep", str(path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        (run,) = store.read_runs()
    assert run.config["sweep"] == "nameless"


def test_a_point_measured_by_measure_is_resumed_by_the_sweep_of_the_same_point(tmp_path):
    """measure and sweep default to the same device, so they store the same point id: nothing is redone."""
    db = str(tmp_path / "r.db")
    args = ["measure", "--engine", "simulated", "--model", "sim", "--batch-size", "2", "--input-len", "32"]
    measured = CliRunner().invoke(app, [*args, "--output-len", "8", "--window-s", "1", "--db", db])
    assert measured.exit_code == 0, measured.output
    spec = tmp_path / "same.yaml"
    spec.write_text(MINIMAL)
    swept = CliRunner().invoke(app, ["sweep", str(spec), "--db", db])
    assert swept.exit_code == 0, swept.output
    assert "0 measured" in swept.output and "1 already stored" in swept.output


def test_auto_hashes_as_cuda_so_stored_sweeps_resume():
    """Specs written when the default was cuda keep their point ids."""
    auto = parse_spec(MINIMAL).points()[0]
    cuda = parse_spec(MINIMAL + "device: cuda\n").points()[0]
    cpu = parse_spec(MINIMAL + "device: cpu\n").points()[0]
    assert auto.point_id() == cuda.point_id() != cpu.point_id()


def test_auto_resolves_to_a_device_every_engine_accepts():
    """`auto` becomes cuda where torch sees a GPU, else cpu; each engine's config accepts the result."""
    pytest.importorskip("torch")
    import torch

    from llm_energy.engines import engine_class
    from llm_energy.engines.vllm import VllmEngine, VllmEngineConfig

    device = resolve_device("auto")
    assert device == ("cuda" if torch.cuda.is_available() else "cpu")
    for name in ("hf", "hf-paged", "hf-spec"):
        assert engine_class(name).Config(device=device).device == device
    mode = "cudagraphs" if device == "cuda" else "eager"
    VllmEngine(VllmEngineConfig(device=device, mode=mode), load_architecture("tiny"))  # no vllm import


def test_a_hf_sweep_without_device_runs_where_auto_resolves(tmp_path):
    """The real hf engine in a sweep with no `device:` runs on the resolved device (the CPU here)."""
    pytest.importorskip("torch")
    spec = tmp_path / "hf.yaml"
    spec.write_text(
        "models: [tiny]\nengines: [{engine: hf}]\nbatch_sizes: [1]\ninput_lens: [8]\noutput_lens: [2]\n"
        "window_s: 0.3\nidle_s: 0\ndtype: float32\n"
    )
    db = tmp_path / "r.db"
    result = CliRunner().invoke(app, ["sweep", str(spec), "--db", str(db)])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        (run,) = store.read_runs()
    assert run.status == "ok"
    assert run.config["device"] == resolve_device("auto")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("device: tpu\n", r"line 7: device: device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("dtype: int3\n", r"line 7: dtype: dtype must be one of bfloat16, float16, float32, got 'int3'"),
        ("window_s: .nan\n", r"line 7: window_s: Input should be a finite number"),
        ("idle_s: -5\n", r"line 7: idle_s: Input should be greater than or equal to 0"),
        ("name: ''\n", r"line 7: name: String should have at least 1 character"),
    ],
)
def test_bad_spec_values_name_field_and_line(extra, expected):
    text = MINIMAL.replace("window_s: 1.0\nidle_s: 0\n", "") + "repeats: 1\n" + extra
    with pytest.raises(ConfigError, match=expected):
        parse_spec(text)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{engine: simulated, device: cpu}",
            r"line 2: engines.0: .*option 'device' is the point's own field",
        ),
        ("{engine: simulated, bogus: 1}", r"line 2: engines.0: engine 'simulated': invalid bogus"),
        ("{engine: simulated, max_batch_size: 0}", r"line 2: engines.0: .*max_batch_size"),
    ],
)
def test_engine_options_are_checked_at_parse_time_with_their_line(entry, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_spec(MINIMAL.replace("[{engine: simulated}]", f"[{entry}]"))


def test_a_huge_batch_is_refused_by_the_point():
    with pytest.raises(ConfigError, match=r"tokens in one batch; at most 2,147,483,647"):
        make_point(model="sim", engine="simulated", batch_size=10**12)


def test_spec_round_trips_through_json_yaml():
    """JSON is YAML: a spec written by a program parses the same."""
    spec = SweepSpec(
        **json.loads(
            json.dumps(
                {
                    "models": ["sim"],
                    "engines": [{"engine": "simulated"}],
                    "batch_sizes": [1],
                    "input_lens": [8],
                    "output_lens": [2],
                }
            )
        )
    )
    assert spec.name == "sweep" and spec.device == "auto"

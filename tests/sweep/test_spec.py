"""Sweep specs: the issue's example parses, bad specs give one error naming field and line."""

from __future__ import annotations

import pytest

from llm_energy.errors import ConfigError
from llm_energy.sweep.spec import parse_spec

EXAMPLE = """\
name: h100-calibration
models: [llama-3.1-8b]
engines: [{engine: hf, mode: eager}, {engine: hf, mode: cudagraphs}]
batch_sizes: [1, 8, 64]
input_lens: [128, 512, 2048]
output_lens: [32, 128]
repeats: 3
"""


def test_example_spec_expands_to_grid_in_group_then_shape_then_batch_order():
    """2 modes × 3 batches × 3 inputs × 2 outputs = 36 points, batch sizes ascending within a shape."""
    spec = parse_spec(EXAMPLE)
    points = spec.points()
    assert len(points) == 36
    assert spec.repeats == 3
    assert [p.batch_size for p in points[:3]] == [1, 8, 64]
    assert {p.mode for p in points[:18]} == {"eager"}
    assert len({p.point_id() for p in points}) == 36


def test_point_id_is_stable_and_sensitive():
    """The same point gets the same id in two parses; changing one field changes it."""
    a = parse_spec(EXAMPLE).points()[0]
    b = parse_spec(EXAMPLE).points()[0]
    c = parse_spec(EXAMPLE.replace("seed", "x").replace("repeats: 3", "repeats: 3\nseed: 1")).points()[0]
    assert a.point_id() == b.point_id()
    assert a.point_id() != c.point_id()


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (("repeats: 3", "repeets: 3"), r"line 7: repeets: Extra inputs are not permitted"),
        (("batch_sizes: [1, 8, 64]", "batch_sizes: []"), r"line 4: batch_sizes: .*at least 1"),
        (("batch_sizes: [1, 8, 64]", "batch_sizes: [1, x]"), r"line 4: batch_sizes.1: .*integer"),
        (("batch_sizes: [1, 8, 64]", "batch_sizes: [0]"), r"line 4: batch_sizes: .*> 0"),
        (("mode: eager", "mode: turbo"), r"line 3: engines.0: unknown mode 'turbo'"),
        (("models: [llama-3.1-8b]", "models: [llama-9]"), r"line 2: models.0: unknown .*llama-9"),
        (("input_lens: [128, 512, 2048]", "input_lens: [200000]"), r"line 5: input_lens: .*exceeds"),
        (("repeats: 3", "repeats: 0"), r"line 7: repeats: .*greater than or equal to 1"),
    ],
)
def test_bad_spec_names_field_and_line(patch, expected):
    """Each broken spec raises one ConfigError with the field and its YAML line."""
    with pytest.raises(ConfigError, match=expected):
        parse_spec(EXAMPLE.replace(*patch))


def test_not_a_mapping_and_not_yaml():
    """Garbage input is rejected with a clear message."""
    with pytest.raises(ConfigError, match="mapping"):
        parse_spec("- a\n- b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_spec("name: [unclosed\n")

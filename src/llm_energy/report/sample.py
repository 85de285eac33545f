"""The sample report built from bundled data only: calibration runs, profile and the Azure conversation trace.

`bundled_calibration_frame` reads the calibration CSV shipped with the package and adds the `env_*`
columns from its JSON sidecar, so it looks like a `Store.runs_frame()` of those runs. `sample_report`
renders the report that `docs/results/report-sample.html` holds; run
`python -m llm_energy.report.sample OUT.html` to regenerate it (offline, in about a second).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import pandas as pd

CALIBRATION: Final = "h100-llama-3.1-8b-vllm-cudagraphs"
"""Stem of the bundled calibration data (`llm_energy/data/calibration/<stem>.csv` and `.json`)."""
SAMPLE_PROFILE: Final = "h100-llama-3.1-8b-vllm"
"""The bundled profile fitted on those runs (named: the package's default profile is another GPU's)."""

SAMPLE_TRACE: Final = "azure-conv"
SAMPLE_TITLE: Final = "llm-energy sample report: Llama-3.1-8B shapes, vLLM, H100"


def bundled_calibration_frame(stem: str = CALIBRATION) -> pd.DataFrame:
    """Return the bundled calibration runs as a runs frame, with `env_*` columns from the sidecar.

    Containers of the environment (the GPU list, versions, notes) become JSON strings, as in
    `Store.runs_frame()`.

    Raises:
        ConfigError: No bundled calibration data of that name.
    """
    import pandas as pd

    from llm_energy.errors import ConfigError

    folder = resources.files("llm_energy").joinpath("data", "calibration")
    csv, meta = folder.joinpath(f"{stem}.csv"), folder.joinpath(f"{stem}.json")
    if not csv.is_file():
        raise ConfigError(f"no bundled calibration data {stem!r}")
    with csv.open("r", encoding="utf-8") as fh:
        frame = pd.read_csv(fh)
    env = json.loads(meta.read_text(encoding="utf-8")).get("env", {}) if meta.is_file() else {}
    for key, value in env.items():
        cell = json.dumps(value) if isinstance(value, Mapping | list | tuple) else value
        frame[f"env_{key}"] = cell
    return frame


def all_bundled_calibrations_frame() -> pd.DataFrame:
    """Return every bundled calibration (each with its own `env_*` columns) as one runs frame.

    The default database of `llm-energy report` and `plot`: all engines and GPUs measured for the package
    (H100: vLLM and HF eager; H200: vLLM, the irregular points `llm-energy calibrate` chose).
    """
    import pandas as pd

    folder = resources.files("llm_energy").joinpath("data", "calibration")
    stems = sorted(f.name[: -len(".csv")] for f in folder.iterdir() if f.name.endswith(".csv"))
    return pd.concat([bundled_calibration_frame(stem) for stem in stems], ignore_index=True)


def sample_report(*, generated_at: str | None = None, dpi: int = 100) -> str:
    """Render the sample report: the H100 vLLM calibration runs, their profile, an `azure-conv` estimate.

    Args:
        generated_at: Time stamp to print (the current UTC time when None).
        dpi: Resolution of the embedded figures.
    """
    from llm_energy.estimate import estimate_trace
    from llm_energy.modeling.profile import load_profile
    from llm_energy.report.html import render_report
    from llm_energy.workloads import load_trace

    profile = load_profile(SAMPLE_PROFILE)
    trace = load_trace(SAMPLE_TRACE)
    estimate = estimate_trace(
        trace.input_tokens,
        trace.output_tokens,
        profile,
        duration_s=float(trace.arrival_s[-1])
        if trace.arrival_s is not None and len(trace.arrival_s)
        else None,
    )
    return render_report(
        bundled_calibration_frame(),
        estimate=estimate,
        profile=profile,
        title=SAMPLE_TITLE,
        generated_at=generated_at,
        dpi=dpi,
    )


if __name__ == "__main__":  # pragma: no cover - a regeneration helper for the docs
    from llm_energy.report.html import write_report

    if len(sys.argv) != 2:
        sys.exit("usage: python -m llm_energy.report.sample OUT.html")
    written = write_report(Path(sys.argv[1]), sample_report())
    sys.stdout.write(f"wrote {written}\n")

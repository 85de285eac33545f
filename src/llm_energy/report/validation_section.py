"""The report's "Model validation" section: measured validation runs beside the models' estimates.

A validation run (`llm_energy.validation.offline.ValidationRun`, written by `llm-energy validate --out`
or `benchmarks/validate_gpu.py`) is a trace sample measured on the GPU. With profiles, each run is
compared (`llm_energy.validation.models.compare`) with the profile of its own configuration (same
model, engine and mode; else same engine; else the first profile, said so) and every method's estimate
is shown with its signed error against the measurement. Without a profile only the measured figures are shown.

Every value from a file or a profile is escaped (`_html_parts._e`), as in the rest of the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llm_energy.errors import ConfigError
from llm_energy.report._html_parts import _e, _num, _pm, _rows_table, _td, _td_safe

if TYPE_CHECKING:
    from llm_energy.modeling.profile import EnergyProfile
    from llm_energy.validation.models import ModelError
    from llm_energy.validation.offline import ValidationRun


@dataclass(frozen=True)
class ValidationEntry:
    """One measured validation run, with the models' estimates when a profile was given.

    Attributes:
        name: Where the run came from (its file name), shown as given (escaped).
        run: The measured run.
        profile: Name of the profile compared with; None: measured figures only.
        errors: Each model's estimate against the measurement (`models.compare`); empty without profile.
        note: Why the profile may not match the run, or empty.
    """

    name: str
    run: ValidationRun
    profile: str | None = None
    errors: list[ModelError] = field(default_factory=list)
    note: str = ""


def load_validation_runs(paths: Sequence[str | Path]) -> list[tuple[str, ValidationRun]]:
    """Read validation run files, each as (file name, run).

    Raises:
        ConfigError: A file that is missing, unreadable or not a validation run (the message names it).
    """
    from llm_energy.validation.offline import ValidationRun

    runs = []
    for path in paths:
        try:
            run = ValidationRun.load(path)
            _check_run(run)
            runs.append((Path(path).name, run))
        except ConfigError as exc:
            raise ConfigError(f"--validation {str(path)!r}: {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:  # fields of the wrong type
            raise ConfigError(f"--validation {str(path)!r}: malformed validation run: {exc}") from None
    return runs


def _check_run(run: ValidationRun) -> None:
    """Raise ConfigError for fields of the wrong type or an empty run (JSON is not type-checked)."""
    numbers = {"energy_j": run.energy_j, "uncertainty_j": run.uncertainty_j, "batch_size": run.batch_size}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"malformed validation run: {key} is {value!r}, not a number")
    lengths = (run.input_tokens, run.output_tokens)
    if not all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in lengths):
        raise ConfigError("malformed validation run: input_tokens / output_tokens are not lists of integers")
    if not run.input_tokens or len(run.input_tokens) != len(run.output_tokens):
        raise ConfigError(
            f"malformed validation run: {len(run.input_tokens)} input and {len(run.output_tokens)} "
            "output lengths (want the same number, at least one)"
        )
    if not isinstance(run.trace, str) or not isinstance(run.engine, str):
        raise ConfigError("malformed validation run: trace and engine must be text")


def validation_entries(
    runs: Sequence[tuple[str, ValidationRun]], profiles: Mapping[str, EnergyProfile] | None = None
) -> list[ValidationEntry]:
    """Compare each run with the best-matching profile (none given: measured figures only).

    Raises:
        ConfigError: A run whose figures cannot be compared (e.g. no requests).
    """
    from llm_energy.validation.models import compare

    entries = []
    for name, run in runs:
        if not profiles:
            entries.append(ValidationEntry(name, run))
            continue
        profile_name, note = _matching_profile(run, profiles)
        try:
            errors = compare(run, profiles[profile_name])
        except (ValueError, TypeError, ZeroDivisionError, IndexError) as exc:
            raise ConfigError(f"--validation {name!r}: cannot compare with {profile_name}: {exc}") from None
        entries.append(ValidationEntry(name, run, profile_name, errors, note))
    return entries


def _matching_profile(run: ValidationRun, profiles: Mapping[str, EnergyProfile]) -> tuple[str, str]:
    """The profile of the run's configuration: model, engine and mode; else engine; else the first."""
    for name, p in profiles.items():
        if (p.model, p.engine, p.mode) == (run.model, run.engine, run.mode):
            return name, ""
    first = next(iter(profiles))
    for name, p in profiles.items():
        if p.engine == run.engine:
            first = name
            break
    p = profiles[first]
    return first, (
        f"no profile of {run.model} {run.engine} {run.mode} given: compared with {first} "
        f"({p.model} {p.engine} {p.mode})"
    )


def validation_section(entries: Sequence[ValidationEntry]) -> str:
    """The "Model validation" section (HTML) of measured runs and, where compared, each model's error."""
    if not entries:
        return ""
    compared = any(e.profile is not None for e in entries)
    head = ["file", "trace", "engine / mode", "batch", "requests", "measured J", "measured J / request"]
    if compared:
        head += ["profile", "method", "estimate J", "error"]
    rows = []
    for e in entries:
        r = e.run
        span = max(len(e.errors), 1)
        rs = f' rowspan="{span}"' if span > 1 else ""
        per_request = r.energy_j / r.requests if r.requests else math.nan
        unc_per_request = r.uncertainty_j / r.requests if r.requests else math.nan
        fixed = [
            f"<td{rs}>{_e(e.name)}</td>",
            f"<td{rs}>{_e(r.trace)}</td>",
            f"<td{rs}>{_e(r.engine)} / {_e(r.mode or '–')}</td>",
            f'<td class="n"{rs}>{_num(r.batch_size)} ({_e(r.batching)})</td>',
            f'<td class="n"{rs}>{_num(r.requests)}</td>',
            f'<td class="n"{rs}>{_pm(r.energy_j, r.uncertainty_j)}</td>',
            f'<td class="n"{rs}>{_pm(per_request, unc_per_request)}</td>',
        ]
        if not compared:
            rows.append("<tr>" + "".join(fixed) + "</tr>")
            continue
        profile = _e(e.profile or "–") + (f'<br><span class="meta">{_e(e.note)}</span>' if e.note else "")
        fixed.append(f"<td{rs}>{profile}</td>")
        if not e.errors:
            rows.append("<tr>" + "".join(fixed) + "<td>–</td><td>–</td><td>–</td></tr>")
            continue
        for i, m in enumerate(e.errors):
            cells = [
                _td(m.method),
                _td_safe(_pm(m.estimate_j, m.uncertainty_j) if m.uncertainty_j else _num(m.estimate_j)),
                _td_safe(_signed_percent(m.rel_error)),
            ]
            rows.append("<tr>" + ("".join(fixed) if i == 0 else "") + "".join(cells) + "</tr>")
    intro = (
        "<p>Trace samples run on the GPU with their true input and output lengths and measured (GPU "
        "energy of the whole run ± the meter's bound). "
    )
    if compared:
        intro += (
            "Each is estimated on the same requests by every model of the profile of its configuration: "
            "<code>physical</code> (the default: every request in a batch of equal requests at the run's "
            "batch size, costed by the physical model), <code>physical-continuous</code> (continuous "
            "engines: the physical model replaying the engine's scheduler, requests joining as others "
            "finish), <code>physical-padded</code> / <code>binned-padded</code> / "
            "<code>parametric-padded</code> (static engines: each padded batch at its padded shape), "
            "<code>binned</code> and <code>p1</code> (the calibration grid through length bins: ours and "
            "the seed study's), <code>parametric</code>, and the FLOPs baselines (peak, 50% utilisation). "
            "Error = (estimate − measured) / measured.</p>"
        )
    else:
        intro += (
            '</p><p class="note">No profile given: measured figures only. Pass <code>--profile</code> to '
            "compare them with the models' estimates.</p>"
        )
    return "<h2>Model validation</h2>" + intro + _rows_table(head, rows)


def _signed_percent(value: float) -> str:
    return f"{100 * value:+.1f}%" if math.isfinite(value) else "–"

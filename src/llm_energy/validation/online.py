"""Online vs offline energy of the same requests: a stored serving run beside an offline run of it.

The request set is a stored serving run's requests that received at least one token, each with its
input length, the output tokens it actually received, and its own joules (`metrics.attribute_energy`:
the run's consecutive meter windows split over the requests in flight). The offline side runs that
same set, at those lengths, either

- **measured**: through an engine with `offline.run_validation` (continuous batching at the online
  run's peak concurrency unless told otherwise), or read from a `ValidationRun` JSON whose request
  lengths must be the same multiset; or
- **modelled**: from an `EnergyProfile` (`estimate.estimate_trace`), labelled as such.

Both sides are GPU energy with idle power included (the online attribution splits whole meter
windows, the offline run is one window around all its work), over the whole run: warm-up, ramp-up
and drain count on both sides. See docs/methodology.md, "Online vs offline".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.validation.online_records import Comparison, EnergySide, RequestSet

if TYPE_CHECKING:
    from llm_energy.modeling.profile import EnergyProfile
    from llm_energy.store.db import Store
    from llm_energy.validation.offline import ValidationRun
    from llm_energy.workloads.traces import Trace

__all__ = [
    "Comparison",
    "EnergySide",
    "RequestSet",
    "compare_online_offline",
    "load_request_set",
    "max_concurrency",
    "measure_offline",
    "offline_from_profile",
    "offline_from_run",
    "request_set_trace",
]

UPDATE_PERIOD_S = 0.1
"""NVML's energy/power refresh period on the lent H100 (meters.zeus.DEFAULT_UPDATE_PERIOD_S).

The online meter windows are consecutive, so their edge errors cancel inside the run and only the
two outer edges can each miss up to one period; the stored run keeps no bound, so it is rebuilt here
from this period and the peak power of the stored power series."""


def max_concurrency(sent_s: np.ndarray, done_s: np.ndarray) -> int:
    """Most intervals [sent, done) open at once (a request done at t no longer counts at t)."""
    if len(sent_s) == 0:
        return 0
    times = np.concatenate([np.asarray(sent_s, float), np.asarray(done_s, float)])
    steps = np.concatenate([np.ones(len(sent_s)), -np.ones(len(done_s))])
    order = np.lexsort((steps, times))  # at equal times, ends (-1) sort before starts
    return int(np.cumsum(steps[order]).max())


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def load_request_set(store: Store, run_id: str | None = None) -> RequestSet:
    """Read a stored serving run's requests (the latest run when `run_id` is None).

    Raises:
        ConfigError: No serving run stored, unknown `run_id`, a run stored without per-request
            energy (no GPU was metered), or no request received a token.
    """
    from llm_energy.store.serving import read_serving_requests, read_serving_runs, read_serving_samples

    runs = read_serving_runs(store)
    if runs.empty:
        raise ConfigError(f"no serving run in {store.path}: store one with `llm-energy replay ... --db`")
    if run_id is None:
        row = runs.iloc[-1]
    else:
        match = runs[runs["run_id"] == run_id]
        if match.empty:
            known = ", ".join(list(runs["run_id"])[-5:])
            raise ConfigError(f"no serving run {run_id!r} in {store.path} (latest: {known})")
        row = match.iloc[0]
    rid = str(row["run_id"])
    reqs = read_serving_requests(store, rid)
    energy = reqs["energy_j"].to_numpy(dtype=float, na_value=np.nan) if len(reqs) else np.array([])
    if len(reqs) == 0 or not np.isfinite(energy).any():
        raise ConfigError(
            f"serving run {rid} has no per-request energy (no GPU was metered): nothing to compare"
        )
    received = reqs["output_tokens_received"].to_numpy(dtype=np.int64)
    keep = (received >= 1) & np.isfinite(energy)
    if not keep.any():
        raise ConfigError(f"no request of serving run {rid} received a token: nothing to run offline")
    samples = read_serving_samples(store, rid)
    peak_w = float(samples["total_power_w"].max()) if len(samples) else math.nan
    sent = reqs["sent_s"].to_numpy(dtype=float)
    done = reqs["done_s"].to_numpy(dtype=float)
    return RequestSet(
        run_id=rid,
        input_tokens=reqs["input_tokens"].to_numpy(dtype=np.int64)[keep],
        output_tokens=received[keep],
        online_j=energy[keep],
        excluded=int((~keep).sum()),
        excluded_online_j=float(np.nansum(energy[~keep])),
        max_concurrency=max_concurrency(sent, done),
        span_s=float(done.max() - sent.min()),
        online_uncertainty_j=2 * UPDATE_PERIOD_S * peak_w,
        run={k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_dict().items()},
    )


def request_set_trace(rs: RequestSet) -> Trace:
    """The request set as a trace an offline engine runs: its input lengths and received output tokens."""
    from llm_energy.workloads.traces import Trace

    return Trace(f"serving-run-{rs.run_id[:12]}", rs.input_tokens, rs.output_tokens, source=rs.run_id)


def _online_side(rs: RequestSet) -> EnergySide:
    return EnergySide(
        label=f"online ({rs.run.get('server') or 'server'}, measured)",
        kind="measured",
        total_j=float(rs.online_j.sum()),
        uncertainty_j=rs.online_uncertainty_j,
        requests=rs.requests,
        output_tokens=int(rs.output_tokens.sum()),
        mean_j=float(rs.online_j.mean()),
        p50_j=_percentile(rs.online_j, 50),
        p90_j=_percentile(rs.online_j, 90),
        window=(
            f"whole run ({rs.span_s:.1f} s, first send to last completion: warm-up and drain included); "
            "each request's joules from the consecutive meter windows split over the requests in flight "
            "by tokens processed; windows with no request in flight are in no request's joules"
        ),
    )


def _pairs(input_tokens: Any, output_tokens: Any) -> list[tuple[int, int]]:
    return sorted(zip((int(x) for x in input_tokens), (int(x) for x in output_tokens), strict=True))


def _token_split_j(run: ValidationRun) -> np.ndarray:
    """Each request's share of the offline joules, in proportion to its tokens (input + output).

    The online attribution's rule applied to the offline run's windows: the whole run (continuous)
    or each padded batch (static); one window cannot say more about single requests.
    """
    lin = np.asarray(run.input_tokens, float)
    lout = np.asarray(run.output_tokens, float)
    tokens = lin + lout
    if not run.batches:
        split: np.ndarray = run.energy_j * tokens / tokens.sum()
        return split
    out = np.empty(len(tokens))
    lo = 0
    for b in run.batches:
        part = tokens[lo : lo + b.requests]
        out[lo : lo + b.requests] = b.energy_j * part / part.sum()
        lo += b.requests
    return out


def offline_from_run(run: ValidationRun, rs: RequestSet, source: str = "") -> EnergySide:
    """The offline side from a measured `ValidationRun` of the same requests.

    Raises:
        ConfigError: The run's (input, output) lengths are not the request set's (as multisets).
    """
    theirs, ours = _pairs(run.input_tokens, run.output_tokens), _pairs(rs.input_tokens, rs.output_tokens)
    if theirs != ours:
        first = next(((a, b) for a, b in zip(theirs, ours, strict=False) if a != b), None)
        detail = (
            f"first difference (input, output): {first[0]} vs {first[1]}" if first else "different counts"
        )
        raise ConfigError(
            f"offline run {source or run.trace!r} has {len(theirs)} requests but serving run {rs.run_id} "
            f"has {len(ours)} with a token; their lengths differ ({detail})"
        )
    per_request = _token_split_j(run)
    if run.batching == "continuous":
        shape = f"continuous, ≤ {run.batch_size} at once"
    else:
        shape = f"static padded batches of {run.batch_size}"
    return EnergySide(
        label=f"offline ({run.engine} {run.mode or ''}".rstrip() + f", {shape}, measured)",
        kind="measured",
        total_j=run.energy_j,
        uncertainty_j=run.uncertainty_j,
        requests=run.requests,
        output_tokens=int(sum(run.output_tokens)),
        mean_j=run.j_per_request,
        p50_j=_percentile(per_request, 50),
        p90_j=_percentile(per_request, 90),
        window=(
            f"one meter window around the whole offline run ({run.duration_s:.1f} s)"
            + (" (padded batches' own windows)" if run.batches else "")
            + "; per-request percentiles split it by tokens (input + output)"
        ),
    )


def offline_from_profile(
    profile: EnergyProfile, rs: RequestSet, batch_size: int, *, method: str = "physical", name: str = ""
) -> EnergySide:
    """The offline side modelled from a profile: every request at `batch_size` (not measured).

    Raises:
        ConfigError: Bad method or batch size, or the model drops requests (lengths beyond its bins).
    """
    from llm_energy.estimate import estimate_trace

    est = estimate_trace(rs.input_tokens, rs.output_tokens, profile, method=method, batch_size=batch_size)
    if est.dropped:
        raise ConfigError(
            f"the {method} model drops {est.dropped} of the {rs.requests} requests (lengths beyond its "
            "bins): the modelled set would not be the online one; use --method physical or binned"
        )
    return EnergySide(
        label=f"offline (MODELLED from profile {name or profile.describe()}, {method}, batch {batch_size})",
        kind="modelled",
        total_j=est.total_j,
        uncertainty_j=est.uncertainty_j,
        requests=est.requests,
        output_tokens=est.output_tokens,
        mean_j=est.request_mean_j,
        p50_j=est.request_p50_j,
        p90_j=est.request_p90_j,
        window=f"modelled: homogeneous offline batches of {batch_size} from the profile's {method} model",
    )


def measure_offline(
    rs: RequestSet,
    *,
    engine: str,
    model: str,
    mode: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    batching: Literal["static", "continuous"] = "continuous",
    options: Mapping[str, Any] | None = None,
    idle_s: float = 3.0,
    seed: int = 0,
    on_status: Any = None,
) -> ValidationRun:
    """Run the request set offline on `engine` (loaded as `llm-energy validate` does) and measure it.

    Args:
        rs: The request set.
        engine: `hf`, `vllm` or `simulated`.
        model: Bundled architecture or local checkpoint.
        mode: Engine mode.
        batch_size: Most sequences at once (default: the online run's peak concurrency).
        device: `auto`, `cuda`, `cuda:N` or `cpu`.
        batching: `continuous` (engines that schedule mixed requests: vllm, simulated) or `static`.
        options: Engine options.
        idle_s: Idle power measured first, seconds.
        seed: Seed of the prompts.
        on_status: Progress callback (a string each).

    Raises:
        ConfigError: Bad engine, mode, lengths or batch, or continuous batching on an engine without it
            (checked before the model loads).
    """
    from llm_energy.engines import ENGINES, engine_class
    from llm_energy.validation.engine import run_on_engine

    batch = batch_size or max(rs.max_concurrency, 1)
    if batch < 1:
        raise ConfigError(f"--batch-size must be ≥ 1, got {batch}")
    if batching == "continuous" and not hasattr(engine_class(engine), "generate_requests"):
        schedulers = [name for name, cls in ENGINES.items() if hasattr(cls, "generate_requests")]
        raise ConfigError(
            f"engine {engine!r} has no continuous batching of mixed-length requests: use --engine "
            f"{' or '.join(schedulers)}, or --batching static for padded batches"
        )
    return run_on_engine(
        request_set_trace(rs),
        batch,
        model=model,
        engine=engine,
        mode=mode,
        device=device,
        seed=seed,
        batching=batching,
        options=dict(options or {}),
        idle_s=idle_s,
        on_status=on_status,
    )


def _bounded_ratio(a: float, da: float, b: float, db: float) -> tuple[float, float]:
    if not (math.isfinite(da) and math.isfinite(db)) or b - db <= 0:
        return math.nan, math.nan
    return (a - da) / (b + db), (a + da) / (b - db)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _windows(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stored run's own window figures, as `replay` reported them."""
    out: list[dict[str, Any]] = []
    energy = json.loads(run.get("energy_json") or "null") or {}
    if energy:
        out.append(
            {
                "name": "steady-state",
                "duration_s": energy.get("duration_s"),
                "j_per_request": energy.get("energy_per_request_j"),
                "j_per_output_token": energy.get("energy_per_output_token_j"),
                "note": (
                    f"warm-up {energy.get('warmup_excluded_s', 0):.1f} s and drain "
                    f"{energy.get('drain_excluded_s', 0):.1f} s excluded; requests completed in it"
                ),
            }
        )
    windows = json.loads(run.get("windows_json") or "null") or {}
    for key, name in (("client", "client-token"), ("gpu", "gpu-work")):
        w = windows.get(key)
        if w:
            out.append(
                {
                    "name": name,
                    "duration_s": w["end_s"] - w["start_s"],
                    "j_per_request": w.get("energy_per_request_j"),
                    "j_per_output_token": w.get("energy_per_output_token_j"),
                    "note": "requests and tokens counted in the window",
                }
            )
    return out


def compare_online_offline(rs: RequestSet, offline: EnergySide, batch_size: int) -> Comparison:
    """Put the online request set beside its offline energy (from `offline_from_*`)."""
    online = _online_side(rs)
    low, high = _bounded_ratio(online.total_j, online.uncertainty_j, offline.total_j, offline.uncertainty_j)
    notes: list[str] = []
    if rs.excluded:
        notes.append(
            f"{rs.excluded} online request(s) left out (no token received or no joules): "
            f"{rs.excluded_online_j:.1f} J online"
        )
    if rs.run.get("status") == "partial":
        notes.append(f"PARTIAL online run: {rs.run.get('exit_reason')}")
    if rs.run.get("frontend_lag"):
        notes.append("the online run was flagged for frontend lag (see its gpu-work window)")
    if not math.isfinite(online.uncertainty_j):
        notes.append("the online run stored no power series: its meter bound is unknown")
    else:
        notes.append(
            f"online bound: one {UPDATE_PERIOD_S:g} s meter update period at peak power at each outer edge"
        )
    return Comparison(
        run_id=rs.run_id,
        server=rs.run.get("server"),
        model=rs.run.get("model"),
        online=online,
        offline=offline,
        batch_size=batch_size,
        max_concurrency=rs.max_concurrency,
        excluded=rs.excluded,
        ratio=_ratio(online.total_j, offline.total_j),
        ratio_low=low,
        ratio_high=high,
        ratio_p50=_ratio(online.p50_j, offline.p50_j),
        ratio_p90=_ratio(online.p90_j, offline.p90_j),
        online_windows=_windows(rs.run),
        notes=notes,
    )

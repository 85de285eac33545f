"""Recommend by simulation: each candidate serves the trace's real arrivals (bursts included), simulated.

The mean-value recommender (`search.py`) models a steady load by Little's law. This one runs each candidate
configuration — a profile (engine, mode, GPU), `max_num_seqs`, the number of instances (TP 1 each) and, where
asked, a lower SM clock (modelled by the DVFS model) — through `simulate` on the same trace window, and ranks
them by simulated energy per request among those that meet the SLO for at least `attainment` of the requests.
Static-batching profiles (HF eager) cannot be simulated as a continuous engine and are left out, said so.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_energy.errors import ConfigError

MAX_NUM_SEQS = (16, 32, 64, 128, 256)
"""`max_num_seqs` values tried per profile (capped by the profile's own)."""

DEFAULT_ATTAINMENT = 0.99
"""Share of requests that must meet the SLO for a configuration to meet it (simulated or measured)."""


@dataclass(frozen=True)
class SimCandidate:
    """One configuration and what the simulator measured of it."""

    profile: str
    max_num_seqs: int
    instances: int
    clock_mhz: float | None
    energy_per_request_j: float
    ttft_p90_s: float
    tpot_p90_s: float
    e2e_p90_s: float
    attainment_pct: float
    gpu_hours: float
    meets_slo: bool
    steady_energy_per_request_j: float = float("nan")
    """Energy per request over the steady-state window (no warm-up, no drain), as `replay` measures it."""
    mode: str | None = None
    """The profile's engine mode (cudagraphs, eager, ...): two profiles of one engine differ by it."""

    def label(self) -> str:
        """Short name of the configuration (the mode added where the profile's name does not say it)."""
        clock = "max clock" if self.clock_mhz is None else f"{self.clock_mhz:.0f} MHz"
        name = self.profile + (f" ({self.mode})" if self.mode and self.mode not in self.profile else "")
        return f"{name} · max_num_seqs {self.max_num_seqs} · {self.instances} instance(s) · {clock}"


@dataclass(frozen=True)
class SimRecommendation:
    """The candidates, the least-energy one that meets the SLO, the runner-up and the Pareto frontier."""

    candidates: list[SimCandidate]
    choice: SimCandidate | None
    runner_up: SimCandidate | None
    frontier: list[SimCandidate]
    window: tuple[float, float] | None
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "scorer": "simulate",
            "window": self.window,
            "choice": None if self.choice is None else asdict(self.choice),
            "runner_up": None if self.runner_up is None else asdict(self.runner_up),
            "frontier": [asdict(c) for c in self.frontier],
            "candidates": [asdict(c) for c in self.candidates],
            "skipped": self.skipped,
        }


def _plan_file(folder: Path, seqs: int, instances: int, clock: float | None) -> str:
    pool: dict[str, Any] = {"classes": "all", "instances": instances, "tp": 1, "max_num_seqs": seqs}
    if clock is not None:
        pool["clock_mhz"] = clock
    path = folder / f"plan-{seqs}-{instances}-{clock}.json"
    path.write_text(json.dumps({"pools": [pool]}), encoding="utf-8")
    return str(path)


def _score(cfg: Any, name: str, seqs: int, n: int, clock: float | None, slo_s: Mapping[str, float],
           attainment: float, mode: str | None = None) -> SimCandidate:  # fmt: skip
    from llm_energy.simulate import simulate

    res = simulate(cfg)
    s = res.summary
    pct = s.slo_attainment_pct if s.slo_attainment_pct is not None else 0.0
    nan = float("nan")
    return SimCandidate(
        profile=name, max_num_seqs=seqs, instances=n, clock_mhz=clock,
        energy_per_request_j=res.totals.j_per_request,
        ttft_p90_s=s.ttft.p90_s if s.ttft else nan, tpot_p90_s=s.tpot.p90_s if s.tpot else nan,
        e2e_p90_s=s.e2e.p90_s if s.e2e else nan, attainment_pct=pct, gpu_hours=res.totals.gpu_hours,
        meets_slo=s.failed == 0 and pct >= 100 * attainment,
        steady_energy_per_request_j=res.energy.energy_per_request_j, mode=mode,
    )  # fmt: skip


def pareto(candidates: Sequence[SimCandidate]) -> list[SimCandidate]:
    """Candidates no other beats on both energy per request and p90 end-to-end latency."""
    out: list[SimCandidate] = []
    for c in sorted(candidates, key=lambda c: (c.energy_per_request_j, c.e2e_p90_s)):
        if not out or c.e2e_p90_s < out[-1].e2e_p90_s:
            out.append(c)
    return out


def recommend_by_simulation(
    trace: str,
    profiles: Mapping[str, Any],
    *,
    gpus: int,
    slo_s: Mapping[str, float],
    window: tuple[float, float] | None = None,
    clocks_mhz: Sequence[float] = (),
    attainment: float = DEFAULT_ATTAINMENT,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimRecommendation:
    """Simulate every candidate on the trace window and pick the least energy per request meeting the SLO.

    Args:
        trace: Bundled trace or trace file (with arrival times).
        profiles: Name → `EnergyProfile` (those without a physical model, or static engines, are skipped).
        gpus: Instances tried: 1 … gpus (TP 1 each).
        slo_s: SLO bounds in seconds (`ttft`, `tpot`, `e2e`).
        window: (start_s, duration_s) of the trace to serve (None: all of it).
        clocks_mhz: SM clocks to model besides the maximum (DVFS model: labelled modelled).
        attainment: Share of requests that must meet the SLO.
        on_progress: Called with (done, total) after each candidate.

    Raises:
        ConfigError: no profile can be simulated, or a bad GPU count.
    """
    from llm_energy.simulate import SimConfig

    if gpus < 1:
        raise ConfigError(f"--gpus must be ≥ 1, got {gpus}")
    skipped, runnable = [], {}
    for name, prof in profiles.items():
        if prof.physical is None or prof.engine not in ("vllm", "simulated", "hf-paged"):
            skipped.append(f"{name}: static batching ({prof.engine} {prof.mode}) is not simulated")
        else:
            runnable[name] = prof
    if not runnable:
        raise ConfigError("no profile can be simulated (a continuous-batching profile with a physical model)")
    jobs = [
        (name, seqs, n, clock)
        for name, prof in runnable.items()
        for seqs in MAX_NUM_SEQS
        if seqs <= (prof.physical.max_num_seqs or 256)
        for n in range(1, gpus + 1)
        for clock in (None, *clocks_mhz)
    ]
    out = []
    with tempfile.TemporaryDirectory(prefix="llm-energy-rec-") as tmp:
        for k, (name, seqs, n, clock) in enumerate(jobs):
            cfg = SimConfig(trace=trace, profile=name, gpus=n, policy=_plan_file(Path(tmp), seqs, n, clock),
                            window=window, slo_s=dict(slo_s), max_num_seqs=seqs)  # fmt: skip
            out.append(_score(cfg, name, seqs, n, clock, slo_s, attainment, runnable[name].mode))
            if on_progress is not None:
                on_progress(k + 1, len(jobs))
    ok = sorted((c for c in out if c.meets_slo), key=lambda c: (c.energy_per_request_j, c.gpu_hours))
    return SimRecommendation(
        out, ok[0] if ok else None, ok[1] if len(ok) > 1 else None, pareto(out), window, skipped
    )

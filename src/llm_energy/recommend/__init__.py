"""Recommend the least-energy configuration that meets a latency SLO at a trace's arrival rate.

The search (`search.py`) evaluates every profile × batch size × GPU clock (DVFS, `modelled`) ×
replicas on the trace; the least energy per request among feasible candidates wins. It is shown
against the naive baseline — HF eager at its own largest feasible batch (the seed study's) and at
batch 1, when an HF-eager profile is given; otherwise the first profile at batch 1 and at its largest
feasible batch, which the output names — and the fastest candidate, with the energy–latency Pareto
frontier and the saving (with its bound) in % and kWh/day. `classes.py` plans per workload class.
Every figure comes from the profiles' physical models (`modeling.physical`, through the `MODELS`
registry). Static-batching engines (HF) are modelled per padded batch in trace order, continuous ones
(vLLM) per request at the concurrency the rate sustains (Little's law, idle power included: `load.py`);
the search ranks by that load-aware figure and keeps the full-batch one beside it (`search.py`).
Every figure is an estimate from the profiles, to be checked by measuring: `validation_configs`
returns the two configurations a validator runs on the GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.recommend.search import (
    Candidate,
    Evaluator,
    check_slo,
    configurations,
    is_hf_eager,
    pads_batches,
)
from llm_energy.units import J_PER_KWH

S_PER_DAY = 86400.0


@dataclass(frozen=True)
class Baseline:
    """A reference configuration and why it is the reference."""

    label: str
    candidate: Candidate


def saving_bounds(
    new_j: float, new_unc_j: float, old_j: float, old_unc_j: float
) -> tuple[float, float, float]:
    """Return (saving, low, high): 1 − new/old with both energies at the ends of their bounds."""
    saving = 1 - new_j / old_j
    low = 1 - (new_j + new_unc_j) / max(old_j - old_unc_j, 1e-12)
    high = 1 - max(new_j - new_unc_j, 0.0) / (old_j + old_unc_j)
    return saving, low, high


@dataclass(frozen=True)
class Recommendation:
    """The chosen candidate, the baselines, the fastest, and all candidates."""

    choice: Candidate | None
    baselines: list[Baseline]
    fastest: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    rate_per_s: float = 0.0
    slo_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Candidate:
        """The primary baseline (the savings are against it)."""
        return self.baselines[0].candidate

    @property
    def saving(self) -> float | None:
        """Fractional energy saving of the choice over the primary baseline."""
        if self.choice is None:
            return None
        return 1 - self.choice.energy_per_request_j / self.baseline.energy_per_request_j

    def saving_range(self, baseline: Candidate | None = None) -> tuple[float, float] | None:
        """Low and high saving over `baseline` (default: the primary) with both estimates' bounds."""
        if self.choice is None:
            return None
        b = baseline or self.baseline
        c = self.choice
        _, low, high = saving_bounds(
            c.energy_per_request_j,
            c.uncertainty_per_request_j,
            b.energy_per_request_j,
            b.uncertainty_per_request_j,
        )
        return low, high

    def kwh_per_day_saved(self, baseline: Candidate | None = None) -> float | None:
        """KWh per day saved at the trace's rate over `baseline` (default: the primary)."""
        if self.choice is None:
            return None
        b = baseline or self.baseline
        delta_j = b.energy_per_request_j - self.choice.energy_per_request_j
        return delta_j * self.rate_per_s * S_PER_DAY / J_PER_KWH

    def kwh_per_day_saved_unc(self, baseline: Candidate | None = None) -> float | None:
        """Bound of `kwh_per_day_saved` (both estimates' bounds added)."""
        if self.choice is None:
            return None
        b = baseline or self.baseline
        unc_j = b.uncertainty_per_request_j + self.choice.uncertainty_per_request_j
        return unc_j * self.rate_per_s * S_PER_DAY / J_PER_KWH

    def pareto(self) -> list[Candidate]:
        """Candidates not beaten on both energy per request and TPOT."""
        ordered = sorted(self.candidates, key=lambda c: (c.tpot_s, c.energy_per_request_j))
        frontier: list[Candidate] = []
        for c in ordered:
            if not frontier or c.energy_per_request_j < frontier[-1].energy_per_request_j:
                frontier.append(c)
        return frontier

    def closest(self) -> Candidate:
        """The candidate nearest to feasible: least worst ratio of latency to bound (or rate to capacity)."""
        fitting = [c for c in self.candidates if c.fits_memory] or self.candidates
        return min(fitting, key=lambda c: (c.slo_ratio(self.slo_s, self.rate_per_s), c.energy_per_request_j))


def _baselines(
    ev: Evaluator,
    mask: np.ndarray,
    rate_per_s: float,
    slo_s: Mapping[str, float],
    max_gpus: int | None,
) -> list[Baseline]:
    hf = [n for n, p in ev.profiles.items() if is_hf_eager(p)]
    name = hf[0] if hf else next(iter(ev.profiles))
    largest = ev.candidate(name, None, None, mask, rate_per_s, slo_s, max_gpus)
    single = ev.candidate(name, 1, None, mask, rate_per_s, slo_s, max_gpus)
    assert largest is not None and single is not None  # the mask keeps at least one request
    if hf:
        return [
            Baseline(
                f"naive: HF eager ({name}) at its largest feasible batch (the seed's baseline)", largest
            ),
            Baseline(f"naive: HF eager ({name}) at batch 1", single),
        ]
    return [
        Baseline(f"{name} at batch 1 (no HF-eager profile given: not the seed's naive baseline)", single),
        Baseline(f"{name} at its largest feasible batch", largest),
    ]


def search(
    ev: Evaluator,
    mask: np.ndarray,
    *,
    rate_per_s: float,
    slo_s: Mapping[str, float],
    batch_sizes: Sequence[int] | None = None,
    clocks_mhz: Sequence[float] | None = None,
    max_gpus: int | None = None,
) -> Recommendation:
    """Search the configurations on the requests in `mask` (the whole trace or one class)."""
    candidates = [
        c
        for name, b, clock in configurations(ev, batch_sizes, clocks_mhz, max_gpus)
        if (c := ev.candidate(name, b, clock, mask, rate_per_s, slo_s, max_gpus)) is not None
    ]
    if not candidates:
        raise ConfigError("no request to search on")
    feasible = [c for c in candidates if c.feasible]
    # Equal energy (a continuous engine at a rate that fills none of several B's runs each at the same
    # concurrency): the one with the most capacity, which absorbs bursts the load model does not see.
    choice = min(feasible, key=lambda c: (c.energy_per_request_j, -c.throughput_per_s)) if feasible else None
    fastest = min(candidates, key=lambda c: (c.tpot_s, c.energy_per_request_j))
    notes = [
        "modelled from the profiles' physical models (roofline terms fitted to every calibration point; "
        "`estimate`'s default) at the requests' own lengths; latencies at their mean lengths; batch sizes "
        "searched: those each profile was calibrated at, B capped only by the KV cache (B is the engine's "
        "max_num_seqs)",
    ]
    if ev.load_aware:
        idle = ", ".join(f"{n}: {ev.idle_power(n):.0f} W" for n in ev.profiles)
        notes.append(
            "load-aware (modelled): at the rate per replica λ an engine runs n = min(B, λ·E2E(n)) "
            "requests at once (Little's law; static engines: partial padded batches of round(n), no "
            "waiting to fill B); J/request is the physical model's at batch n plus idle power "
            f"({idle}) over the time with no request in flight; latencies at batch n (continuous "
            "engines: TTFT = a request's own prefill + one decode step at n, its prefill scheduled "
            "beside the running decodes, no batch of prompts); bursts and queueing below B not modelled; "
            "energy_full_batch_j / *_full_batch_s: the figures if every batch were full"
        )
    static = [n for n, p in ev.profiles.items() if pads_batches(p)]
    if static:
        notes.append(
            f"static batching ({', '.join(static)}): the requests in trace order in batches of B, each "
            "padded to its longest prompt and output (energy, TTFT = the batch's prefill, TPOT = its "
            "decode step, E2E = the whole batch; measured on the H100, HF eager at batch 64: the physical "
            "model per request −66%, per padded batch −2.4%)"
        )
    if clocks_mhz:
        from llm_energy.control.dvfs import H100_DVFS_PARAMS

        notes.append(
            "GPU clocks below the maximum: DVFS model (modelled): "
            + "; ".join(H100_DVFS_PARAMS.assumptions())
        )
    return Recommendation(
        choice,
        _baselines(ev, mask, rate_per_s, slo_s, max_gpus),
        fastest,
        candidates,
        rate_per_s,
        dict(slo_s),
        notes,
    )


def recommend(
    profiles: Mapping[str, EnergyProfile],
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    rate_per_s: float,
    slo_s: Mapping[str, float],
    batch_sizes: Sequence[int] | None = None,
    clocks_mhz: Sequence[float] | None = None,
    max_gpus: int | None = None,
    max_clock_mhz: float | None = None,
    load_aware: bool = True,
) -> Recommendation:
    """Search every profile × batch × clock × replicas for the least energy per request meeting the SLO.

    Args:
        profiles: Name → profile; each a measured configuration.
        input_tokens: Input lengths of the trace's requests.
        output_tokens: Output lengths.
        rate_per_s: Arrival rate to keep up with.
        slo_s: Metric (ttft, tpot, e2e) → bound in seconds.
        batch_sizes: Batch sizes to try (default: the ones each profile was calibrated at).
        clocks_mhz: SM clocks to model besides the maximum (DVFS model, `modelled`).
        max_gpus: GPUs available for replicas (default: one replica).
        max_clock_mhz: Maximum SM clock (default: from the profile's GPU name).
        load_aware: False: every batch full (the model before the load model; comparison and tests).

    Raises:
        ConfigError: no profile, a profile without a physical model, a rate ≤ 0, a bad SLO, a clock
            outside the GPU's range, `max_gpus` < 1.
    """
    ev = make_evaluator(
        profiles,
        input_tokens,
        output_tokens,
        rate_per_s,
        slo_s,
        max_gpus,
        max_clock_mhz,
        load_aware=load_aware,
    )
    return search(
        ev,
        np.ones(ev.lin.size, bool),
        rate_per_s=rate_per_s,
        slo_s=slo_s,
        batch_sizes=batch_sizes,
        clocks_mhz=clocks_mhz,
        max_gpus=max_gpus,
    )


def make_evaluator(
    profiles: Mapping[str, EnergyProfile],
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    rate_per_s: float,
    slo_s: Mapping[str, float],
    max_gpus: int | None,
    max_clock_mhz: float | None,
    *,
    load_aware: bool = True,
) -> Evaluator:
    """Check the search's inputs and build the evaluator.

    Raises:
        ConfigError: no profile, a rate ≤ 0, `max_gpus` < 1, a maximum clock ≤ 0, a bad SLO.
    """
    if not profiles:
        raise ConfigError("recommend needs at least one profile")
    if not rate_per_s > 0:
        raise ConfigError(f"arrival rate must be > 0 requests/s, got {rate_per_s}")
    if max_gpus is not None and max_gpus < 1:
        raise ConfigError(f"--gpus must be ≥ 1, got {max_gpus}")
    if max_clock_mhz is not None and not max_clock_mhz > 0:
        raise ConfigError(f"maximum clock must be > 0 MHz, got {max_clock_mhz}")
    check_slo(slo_s)
    return Evaluator(
        profiles, input_tokens, output_tokens, max_clock_mhz=max_clock_mhz, load_aware=load_aware
    )


class RunConfig(NamedTuple):
    """A configuration a validator runs on the GPU: (engine, mode, batch_size, profile name).

    `gpu_clock_mhz` is set when the choice relies on a modelled clock (None: default clocks).
    """

    engine: str
    mode: str | None
    batch_size: int
    profile: str
    gpu_clock_mhz: float | None = None


def validation_configs(rec: Recommendation) -> tuple[RunConfig, RunConfig]:
    """Return (chosen, baseline) as configurations to run on the same trace sample.

    Raises:
        ConfigError: the recommendation has no choice (no configuration met the SLO).
    """
    if rec.choice is None:
        raise ConfigError("nothing to validate: no configuration meets the SLO")

    def run(c: Candidate) -> RunConfig:
        return RunConfig(c.engine, c.mode, c.batch_size, c.profile, c.clock_mhz)

    return run(rec.choice), run(rec.baseline)


__all__ = [
    "Baseline",
    "Candidate",
    "Evaluator",
    "Recommendation",
    "RunConfig",
    "make_evaluator",
    "recommend",
    "saving_bounds",
    "search",
    "validation_configs",
]

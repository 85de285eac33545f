"""Measure a recommendation: run the chosen and the baseline configuration on the same trace sample.

`validate_recommendation` draws one sample of the trace, runs both configurations of
`validation_configs(rec)` on it with `run_validation` (each opened by `measure_run`: vLLM with
`max_num_seqs` = the batch, HF eager in padded static batches), and puts each measurement beside what
the recommender's model (the profile's physical model) says of the same requests at the same batch
(static engines: per padded batch in trace order, as they run; and, for every static run, the
validation's own `physical-padded` estimate, the same number for a static engine's profile). The
measured saving carries both measurements' uncertainties; latency is what `run_validation` measured
(static engines: per-batch prefill and total time, every request queued at the start), with the SLO
attainment.

Configurations at a modelled GPU clock are refused: measuring them would change the GPU's clocks
(`--allow-gpu-settings`), which this validation never does (the GPUs we test on are shared).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.recommend import Recommendation, RunConfig, saving_bounds, validation_configs
from llm_energy.recommend.search import Evaluator
from llm_energy.validation.models import physical_padded_j
from llm_energy.validation.offline import (
    Batching,
    ValidationRun,
    sample_requests,
    slo_attainment,
)

Measure = Callable[..., ValidationRun]
"""`measure_run`'s signature: (trace, sample, batch_size, *, model, engine, mode, device, seed, ...)."""


@dataclass(frozen=True)
class SampleSpec:
    """Which requests both configurations run: `requests` drawn (seed) among those within the limits."""

    trace: str
    requests: int = 300
    seed: int = 0
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class MeasuredConfig:
    """One configuration measured on the sample, beside the model's estimate of the same requests.

    Attributes:
        role: `chosen` or `baseline`.
        config: What ran.
        run: The measurement.
        modelled_j_per_request: The recommender's estimate (the physical model at the run's batch;
            static engines per padded batch, continuous ones per request).
        modelled_unc_j_per_request: Its 1-σ.
        padded_j_per_request: Static runs: the validation's `physical-padded` estimate, the physical model
            per padded batch (None: continuous).
        slo_attainment: Fraction of requests meeting each SLO bound and `all` (None: no latency measured).
    """

    role: str
    config: RunConfig
    run: ValidationRun
    modelled_j_per_request: float
    modelled_unc_j_per_request: float
    padded_j_per_request: float | None
    slo_attainment: dict[str, float] | None

    @property
    def measured_j_per_request(self) -> float:
        """Measured GPU joules per request."""
        return self.run.j_per_request

    @property
    def measured_unc_j_per_request(self) -> float:
        """Uncertainty of the measured joules per request."""
        return self.run.uncertainty_j / self.run.requests

    @property
    def model_error(self) -> float:
        """Recommender's estimate / measured − 1."""
        return self.modelled_j_per_request / self.measured_j_per_request - 1

    def latency_summary(self) -> dict[str, float] | None:
        """Median and p90 of TTFT / TPOT / E2E in seconds (None: not measured)."""
        if not self.run.ttft_s:
            return None
        out: dict[str, float] = {}
        for name, values in (("ttft", self.run.ttft_s), ("tpot", self.run.tpot_s), ("e2e", self.run.e2e_s)):
            out[f"{name}_p50_s"] = float(np.percentile(values, 50))
            out[f"{name}_p90_s"] = float(np.percentile(values, 90))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the run's per-request lists left out)."""
        return {
            "role": self.role,
            "config": self.config._asdict(),
            "engine": self.run.engine,
            "mode": self.run.mode,
            "batch_size": self.run.batch_size,
            "batching": self.run.batching,
            "requests": self.run.requests,
            "measured_j_per_request": self.measured_j_per_request,
            "measured_unc_j_per_request": self.measured_unc_j_per_request,
            "measured_energy_j": self.run.energy_j,
            "duration_s": self.run.duration_s,
            "modelled_j_per_request": self.modelled_j_per_request,
            "modelled_unc_j_per_request": self.modelled_unc_j_per_request,
            "model_error": self.model_error,
            "padded_model_j_per_request": self.padded_j_per_request,
            "latency": self.latency_summary(),
            "latency_note": self.run.latency_note,
            "slo_attainment": self.slo_attainment,
        }


@dataclass(frozen=True)
class RecommendationCheck:
    """The chosen and the baseline configuration measured on one sample, and the savings."""

    sample: SampleSpec
    eligible_requests: int
    slo_s: dict[str, float]
    chosen: MeasuredConfig
    baseline: MeasuredConfig
    modelled_saving_trace: float | None
    """The recommendation's modelled saving on the whole trace (its baseline at its largest feasible
    batch per request shape, where the run uses one batch)."""
    notes: list[str] = field(default_factory=list)

    @property
    def measured_saving(self) -> tuple[float, float, float]:
        """(saving, low, high) of measured J/request, both measurements at the ends of their bounds."""
        c, b = self.chosen, self.baseline
        return saving_bounds(
            c.measured_j_per_request,
            c.measured_unc_j_per_request,
            b.measured_j_per_request,
            b.measured_unc_j_per_request,
        )

    @property
    def modelled_saving(self) -> tuple[float, float, float]:
        """(saving, low, high) the recommender's model gives for the same sample and batches."""
        c, b = self.chosen, self.baseline
        return saving_bounds(
            c.modelled_j_per_request,
            c.modelled_unc_j_per_request,
            b.modelled_j_per_request,
            b.modelled_unc_j_per_request,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        measured, modelled = self.measured_saving, self.modelled_saving
        return {
            "sample": vars(self.sample),
            "eligible_requests": self.eligible_requests,
            "slo_s": self.slo_s,
            "chosen": self.chosen.to_dict(),
            "baseline": self.baseline.to_dict(),
            "measured_saving": measured[0],
            "measured_saving_low": measured[1],
            "measured_saving_high": measured[2],
            "modelled_saving_sample": modelled[0],
            "modelled_saving_sample_low": modelled[1],
            "modelled_saving_sample_high": modelled[2],
            "modelled_saving_trace": self.modelled_saving_trace,
            "notes": self.notes,
        }


def configs_to_measure(rec: Recommendation) -> tuple[RunConfig, RunConfig]:
    """Return (chosen, baseline), refusing what this validation must not run.

    Raises:
        ConfigError: no configuration meets the SLO, or one relies on a modelled GPU clock.
    """
    chosen, baseline = validation_configs(rec)
    for role, cfg in (("chosen", chosen), ("baseline", baseline)):
        if cfg.gpu_clock_mhz is not None:
            raise ConfigError(
                f"the {role} configuration ({cfg.profile} batch {cfg.batch_size}) runs at a modelled SM "
                f"clock of {cfg.gpu_clock_mhz:g} MHz; measuring it would lock the GPU's clocks "
                "(--allow-gpu-settings), which recommend --validate never does: the GPUs are shared. "
                "Validate at default clocks: leave out --gpu-clocks-mhz"
            )
    return chosen, baseline


def validate_recommendation(
    rec: Recommendation,
    profiles: Mapping[str, EnergyProfile],
    sample: SampleSpec,
    *,
    device: str = "auto",
    idle_s: float = 3.0,
    batching: Batching | None = None,
    measure: Measure | None = None,
    out_dir: Path | None = None,
    on_status: Callable[[str], None] | None = None,
) -> RecommendationCheck:
    """Run the chosen and the baseline configuration on one sample of the trace and compare.

    Args:
        rec: The recommendation (its choice and primary baseline are measured).
        profiles: The profiles it was made from (name → profile), for the models' estimates.
        sample: The trace sample both configurations run.
        device: Device to run on (auto | cuda | cuda:N | cpu).
        idle_s: Seconds of idle power measured before each load.
        batching: Force static or continuous batching for both (default: each engine's own).
        measure: Opens and runs one configuration (default: `measure_run`).
        out_dir: Where each run (`chosen.json`, `baseline.json`) is written as soon as it finishes.
        on_status: Progress messages.

    Raises:
        ConfigError: nothing to validate, a modelled clock, a bad sample, or a configuration the
            engines refuse (all before any model loads, except what only loading reveals).
    """
    chosen_cfg, baseline_cfg = configs_to_measure(rec)
    from llm_energy.workloads import load_trace

    # Drawn here as measure_run draws it (same trace, size, seed and limits: the same requests), so a
    # bad sample fails before anything loads and the models can estimate exactly these requests.
    drawn, eligible = sample_requests(
        load_trace(sample.trace),
        sample.requests,
        seed=sample.seed,
        max_input_tokens=sample.max_input_tokens,
        max_output_tokens=sample.max_output_tokens,
    )
    ev = Evaluator(profiles, drawn.input_tokens, drawn.output_tokens)
    if measure is None:
        from llm_energy.validation.engine import measure_run

        measure = measure_run
    say = on_status or (lambda _msg: None)
    measured: dict[str, MeasuredConfig] = {}
    for role, cfg in (("chosen", chosen_cfg), ("baseline", baseline_cfg)):
        say(f"validating the {role} configuration: {cfg.profile} batch {cfg.batch_size}")
        prof = profiles[cfg.profile]
        run = measure(
            sample.trace,
            sample.requests,
            cfg.batch_size,
            model=prof.model,
            engine=cfg.engine,
            mode=cfg.mode,
            device=device,
            seed=sample.seed,
            max_input_tokens=sample.max_input_tokens,
            max_output_tokens=sample.max_output_tokens,
            batching=batching,
            options={},
            idle_s=idle_s,
        )
        if out_dir is not None:
            run.save(Path(out_dir) / f"{role}.json")
        measured[role] = _beside_model(role, cfg, run, ev, prof, rec)
    notes = [
        f"both configurations ran the same {drawn.name} sample of {len(drawn)} requests "
        f"(seed {sample.seed}, of {eligible} eligible; input ≤ {sample.max_input_tokens}, "
        f"output ≤ {sample.max_output_tokens}) with their true lengths, offline (all submitted at once)",
        "modelled = the recommender's physical-model estimate of the same requests at the run's batch "
        "(static engines: per padded batch in trace order, as they run; continuous: per request), with full "
        "batches as the offline runs have (not the load-aware figure the search ranks by)",
    ]
    if rec.choice is not None and rec.choice.replicas > 1:
        notes.append(f"the choice uses {rec.choice.replicas} replicas; one replica was measured")
    return RecommendationCheck(
        sample,
        eligible,
        dict(rec.slo_s),
        measured["chosen"],
        measured["baseline"],
        rec.saving,
        notes,
    )


def _beside_model(
    role: str,
    cfg: RunConfig,
    run: ValidationRun,
    ev: Evaluator,
    prof: EnergyProfile,
    rec: Recommendation,
) -> MeasuredConfig:
    everything = np.ones(ev.lin.size, bool)
    cand = ev.candidate(cfg.profile, cfg.batch_size, None, everything, rec.rate_per_s, rec.slo_s, None)
    if cand is None:
        raise ConfigError(f"the sample of {cfg.profile} holds no request")
    padded = None
    if run.batching == "static":
        padded = physical_padded_j(prof, run)[0] / run.requests
    # The validation runs offline (every request submitted at once: full batches), so the model beside
    # it is the full-batch figure, not the load-aware one the search ranks by.
    full_j = cand.energy_full_batch_j
    return MeasuredConfig(
        role,
        cfg,
        run,
        cand.energy_per_request_j if full_j is None else full_j,
        cand.uncertainty_per_request_j,
        padded,
        slo_attainment(run, rec.slo_s),
    )


__all__ = [
    "MeasuredConfig",
    "RecommendationCheck",
    "SampleSpec",
    "configs_to_measure",
    "validate_recommendation",
]

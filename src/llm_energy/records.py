"""The shared vocabulary of llm-energy: plain, frozen records that every stage passes along.

This module imports nothing from llm_energy, so meters, engines, the runner and the store can all
depend on it without depending on each other. Every quantity carries its unit in its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Phase = Literal["idle", "prefill", "decode", "total"]
"""Name of a measured window. `total` spans prefill and decode of one generation."""

Source = Literal["measured", "estimated", "modelled"]
"""How an energy figure was obtained: a hardware counter or sensor, an estimate (e.g. TDP x
utilisation), or a fitted model."""

Status = Literal["ok", "oom", "error"]
"""Outcome of one run."""

PHASES: tuple[Phase, ...] = get_args(Phase)
SOURCES: tuple[Source, ...] = get_args(Source)
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class Request:
    """One inference request.

    Attributes:
        input_tokens: Prompt length in tokens.
        output_tokens: Number of generated tokens.
        arrival_s: Arrival time in seconds from the start of a trace, if known.
    """

    input_tokens: int
    output_tokens: int
    arrival_s: float | None = None


@dataclass(frozen=True)
class Measurement:
    """Energy of one meter window, per domain.

    Domains are named `gpu:<i>`, `cpu:<i>` and `dram:<i>`. Each domain has its own source, so an
    estimated CPU figure is never silently added to a measured GPU figure.

    Attributes:
        duration_s: Wall time of the window in seconds.
        energy_j: Energy per domain in joules, idle power included. A domain whose reading was
            unusable (e.g. a counter reset) is absent here and named in `flags`.
        uncertainty_j: Bound on the absolute error of each domain's energy, in joules.
        source: How each domain's energy was obtained.
        idle_power_w: Idle power per domain in watts, measured before the run (empty if not).
        flags: Measurement-quality notes, e.g. `short-window:gpu:0` or `counter-reset:gpu:0`.
    """

    duration_s: float
    energy_j: Mapping[str, float]
    uncertainty_j: Mapping[str, float]
    source: Mapping[str, Source]
    idle_power_w: Mapping[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    def domains(self, prefix: str = "", source: Source | None = None) -> list[str]:
        """Return the domains with energy whose name starts with `prefix` and, if given, of `source`."""
        return [
            d
            for d in self.energy_j
            if d.startswith(prefix) and (source is None or self.source.get(d) == source)
        ]

    def energy_sum_j(self, prefix: str = "", source: Source | None = None) -> float:
        """Return the summed energy in joules over the selected domains (see `domains`)."""
        return sum(self.energy_j[d] for d in self.domains(prefix, source))

    def uncertainty_sum_j(self, prefix: str = "", source: Source | None = None) -> float:
        """Return the worst-case (linearly summed) uncertainty in joules over the selected domains."""
        return sum(self.uncertainty_j.get(d, 0.0) for d in self.domains(prefix, source))

    @property
    def gpu_energy_j(self) -> float:
        """Total energy of all GPU domains in joules."""
        return self.energy_sum_j("gpu:")

    @property
    def gpu_uncertainty_j(self) -> float:
        """Uncertainty of `gpu_energy_j` in joules."""
        return self.uncertainty_sum_j("gpu:")

    def idle_energy_j(self, domain: str) -> float | None:
        """Return idle power x duration for `domain` in joules, or None if idle power is unknown."""
        power_w = self.idle_power_w.get(domain)
        return None if power_w is None else power_w * self.duration_s

    def dynamic_energy_j(self, domain: str) -> float | None:
        """Return energy above idle for `domain` in joules, or None if either part is unknown."""
        idle_j = self.idle_energy_j(domain)
        if idle_j is None or domain not in self.energy_j:
            return None
        return self.energy_j[domain] - idle_j

    def mean_power_w(self, prefix: str = "gpu:") -> float:
        """Return mean power over the window in watts for the selected domains."""
        return self.energy_sum_j(prefix) / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class PhaseResult:
    """One phase of a run, measured in one window that may hold several repetitions.

    Short phases are repeated inside a single window so the window spans many counter update
    periods; the per-repetition figures divide the window by `repetitions`.

    Attributes:
        phase: Which phase the window measured.
        measurement: The meter's window measurement (all repetitions together).
        repetitions: How many times the phase ran inside the window.
        tokens: Tokens processed in one repetition (prefill: batch x input; decode: generated).
    """

    phase: Phase
    measurement: Measurement
    repetitions: int
    tokens: int

    @property
    def duration_s(self) -> float:
        """Wall time of one repetition in seconds."""
        return self.measurement.duration_s / self.repetitions

    @property
    def energy_j(self) -> float:
        """GPU energy of one repetition in joules (CPU domains are reported apart)."""
        return self.measurement.gpu_energy_j / self.repetitions

    @property
    def uncertainty_j(self) -> float:
        """Uncertainty of `energy_j` in joules."""
        return self.measurement.gpu_uncertainty_j / self.repetitions

    @property
    def energy_per_token_j(self) -> float:
        """GPU joules per token of this phase."""
        return self.energy_j / self.tokens if self.tokens else float("nan")

    @property
    def tokens_per_s(self) -> float:
        """Tokens of this phase per second."""
        return self.tokens / self.duration_s if self.duration_s > 0 else float("nan")


@dataclass(frozen=True)
class RunResult:
    """Everything one measured configuration produced, as written to the store.

    Attributes:
        run_id: Unique id of this run.
        config: The full configuration (model, engine, mode, lengths, batch size, ...).
        env: The environment (GPU, driver, clocks, power limit, versions, host).
        phases: Per-phase results; empty when the run failed before measuring.
        status: `ok`, `oom` or `error`.
        error: Error message when status is not `ok`.
        compile_s: Seconds spent compiling / capturing graphs, kept out of steady-state energy.
        load_s: Seconds spent building or loading the model.
        created_at: ISO-8601 UTC timestamp.
    """

    run_id: str
    config: Mapping[str, Any]
    env: Mapping[str, Any]
    phases: Mapping[Phase, PhaseResult] = field(default_factory=dict)
    status: Status = "ok"
    error: str | None = None
    compile_s: float = 0.0
    load_s: float = 0.0
    created_at: str = ""

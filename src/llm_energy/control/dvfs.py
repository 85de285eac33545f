"""A documented DVFS model: energy and time versus SM clock from a profile's prefill/decode split.

Where no measurement at a locked clock exists, this predicts how a workload's energy and duration
change when the SM clock is lowered from its maximum. Every result is labelled `modelled` and carries
the assumptions below; it is a first-order physics model, not a measurement.

Assumptions (r = f / f_max, the clock as a fraction of the maximum SM clock):

- **Time.** A phase's duration scales as `c / r + (1 - c)`, where `c` is the clock-bound share of its
  time. Prefill is compute-bound (`c = 1`: time ∝ f_max / f); decode is memory-bound, bounded by HBM
  bandwidth, which the SM clock does not set (`c = 0.1`: weakly dependent on the clock).
- **Voltage.** Over the DVFS range the supply voltage is linear in the clock,
  `V(r) / V(1) = a + (1 - a)·r` with `a = 0.5` (an H100 runs ~0.7 V at low clocks and ~1 V at 1980 MHz).
- **Power.** A phase's power at clock r is `static + memory + core·r·(V(r)/V(1))²`: static (idle and
  leakage) and memory-domain (HBM, PHY) power do not depend on the SM clock; core-domain dynamic power
  (SMs, L2, crossbar) is ∝ f·V². As fractions of prefill power at f_max (≈ the power limit): static
  0.25; prefill memory 0.20 and core 0.55; decode memory 0.17 and core 0.38 (decode draws 0.8 of
  prefill's power: the SMs mostly wait on memory).
- **Energy** is the sum over phases of power × time. `prefill_share` is the share of the energy spent
  in prefill at f_max (as in `Estimate.prefill_share`), so the phase split of a profile is enough.

Consequences, which reproduce the seed's reference qualitatively (DynamoLLM, Stojkovic et al. 2024,
Table I: up to 20% less power from frequency scaling with little slowdown, and 10–26% energy saved at
fixed TP on Llama-2-70B): at 80% of the maximum clock, power falls ~17–19%; decode slows ~2.5% and
its energy falls ~15%, while compute-bound prefill slows 25% and saves no energy (static power is paid
for longer, eating the f·V² saving). Lower clocks save more for decode-heavy work.

Not modelled: power capping and throttling already lowering the clock at f_max, temperature-dependent
leakage, the memory clock, and latency targets (a slower prefill may break a TTFT objective).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm_energy.errors import ConfigError


@dataclass(frozen=True)
class DvfsParams:
    """Constants of the DVFS model (see the module docstring); powers are fractions of prefill power at f_max.

    Attributes:
        voltage_intercept: `a` in V(r)/V(1) = a + (1 - a)·r.
        static_frac: Static and idle power, independent of the clock.
        prefill_memory_frac: Prefill's memory-domain power (clock-independent).
        prefill_core_frac: Prefill's core-domain dynamic power at f_max (∝ f·V²).
        decode_memory_frac: Decode's memory-domain power (clock-independent).
        decode_core_frac: Decode's core-domain dynamic power at f_max (∝ f·V²).
        prefill_clock_bound: Share of prefill time that scales with 1/f.
        decode_clock_bound: Share of decode time that scales with 1/f.
    """

    voltage_intercept: float = 0.5
    static_frac: float = 0.25
    prefill_memory_frac: float = 0.20
    prefill_core_frac: float = 0.55
    decode_memory_frac: float = 0.17
    decode_core_frac: float = 0.38
    prefill_clock_bound: float = 1.0
    decode_clock_bound: float = 0.1

    def assumptions(self) -> tuple[str, ...]:
        """Return the model's assumptions as short sentences, with this instance's constants."""
        return (
            f"prefill time ∝ {self.prefill_clock_bound:g}·f_max/f + {1 - self.prefill_clock_bound:g} "
            "(compute-bound)",
            f"decode time ∝ {self.decode_clock_bound:g}·f_max/f + {1 - self.decode_clock_bound:g} "
            "(memory-bound)",
            f"V/V_max = {self.voltage_intercept:g} + {1 - self.voltage_intercept:g}·f/f_max",
            "core dynamic power ∝ f·V²; static and memory-domain power independent of the SM clock",
            f"powers at f_max (fraction of prefill power): static {self.static_frac:g}, "
            f"prefill memory {self.prefill_memory_frac:g} + core {self.prefill_core_frac:g}, "
            f"decode memory {self.decode_memory_frac:g} + core {self.decode_core_frac:g}",
            "prefill_share is the energy share of prefill at f_max",
        )


H100_DVFS_PARAMS = DvfsParams()
"""Default constants, chosen for an H100 SXM (700 W, 1980 MHz) serving a dense LLM."""


@dataclass(frozen=True)
class DvfsPrediction:
    """Modelled effect of running at `clock_mhz` instead of the maximum SM clock.

    Attributes:
        clock_mhz: The SM clock.
        energy_factor: Energy at this clock / energy at f_max.
        time_factor: Duration at this clock / duration at f_max.
        power_factor: Mean power at this clock / mean power at f_max.
        source: Always `modelled`.
        assumptions: The model's assumptions, for the report.
    """

    clock_mhz: float
    energy_factor: float
    time_factor: float
    power_factor: float
    source: Literal["modelled"] = "modelled"
    assumptions: tuple[str, ...] = ()


def _phase_factors(
    r: float, memory: float, core: float, clock_bound: float, p: DvfsParams
) -> tuple[float, float]:
    """Return (power at r / power at f_max, time at r / time at f_max) for one phase."""
    v = p.voltage_intercept + (1.0 - p.voltage_intercept) * r
    power_max = p.static_frac + memory + core
    power = p.static_frac + memory + core * r * v * v
    return power / power_max, clock_bound / r + (1.0 - clock_bound)


def dvfs_prediction(
    prefill_share: float,
    clock_mhz: float,
    max_clock_mhz: float,
    *,
    params: DvfsParams = H100_DVFS_PARAMS,
) -> DvfsPrediction:
    """Predict energy, time and power at `clock_mhz` relative to `max_clock_mhz` (labelled `modelled`).

    Args:
        prefill_share: Share of the energy spent in prefill at the maximum clock, in [0, 1].
        clock_mhz: SM clock to predict for, in (0, max_clock_mhz].
        max_clock_mhz: The GPU's maximum SM clock (1980 MHz on an H100 SXM).
        params: Model constants.

    Raises:
        ConfigError: a share outside [0, 1] or a clock outside (0, max_clock_mhz].
    """
    if not 0.0 <= prefill_share <= 1.0:
        raise ConfigError(f"prefill_share={prefill_share} must lie in [0, 1]")
    f = phase_factors(clock_mhz, max_clock_mhz, params=params)  # checks the clock
    energy_factor = prefill_share * f.prefill_energy + (1.0 - prefill_share) * f.decode_energy
    # Energy shares → time shares at f_max through each phase's power at f_max.
    pre_power_max = params.static_frac + params.prefill_memory_frac + params.prefill_core_frac
    dec_power_max = params.static_frac + params.decode_memory_frac + params.decode_core_frac
    pre_t, dec_t = prefill_share / pre_power_max, (1.0 - prefill_share) / dec_power_max
    time_factor = (pre_t * f.prefill_time + dec_t * f.decode_time) / (pre_t + dec_t)
    return DvfsPrediction(
        clock_mhz=clock_mhz,
        energy_factor=energy_factor,
        time_factor=time_factor,
        power_factor=energy_factor / time_factor,
        assumptions=params.assumptions(),
    )


def dvfs_energy_factor(
    prefill_share: float,
    clock_mhz: float,
    max_clock_mhz: float,
    *,
    params: DvfsParams = H100_DVFS_PARAMS,
) -> tuple[float, float]:
    """Return modelled (energy factor, time factor) at `clock_mhz` relative to the maximum clock.

    A shortcut for `dvfs_prediction` (which also gives the power factor and the assumptions); the
    numbers are `modelled`, never measured.

    Raises:
        ConfigError: a share outside [0, 1] or a clock outside (0, max_clock_mhz].
    """
    pred = dvfs_prediction(prefill_share, clock_mhz, max_clock_mhz, params=params)
    return pred.energy_factor, pred.time_factor


def predict_energy_vs_clock(
    prefill_share: float,
    clocks_mhz: list[float],
    max_clock_mhz: float,
    *,
    params: DvfsParams = H100_DVFS_PARAMS,
) -> list[DvfsPrediction]:
    """Return `dvfs_prediction` at each clock (a modelled energy-vs-clock curve, e.g. for a sweep axis)."""
    return [dvfs_prediction(prefill_share, c, max_clock_mhz, params=params) for c in clocks_mhz]


@dataclass(frozen=True)
class PhaseFactors:
    """Modelled per-phase factors at a clock, relative to the maximum clock (labelled `modelled`).

    Attributes:
        clock_mhz: The SM clock.
        prefill_energy: Prefill energy at this clock / at f_max.
        prefill_time: Prefill duration at this clock / at f_max.
        decode_energy: Decode energy at this clock / at f_max.
        decode_time: Decode duration at this clock / at f_max.
    """

    clock_mhz: float
    prefill_energy: float
    prefill_time: float
    decode_energy: float
    decode_time: float
    source: Literal["modelled"] = "modelled"


def phase_factors(
    clock_mhz: float, max_clock_mhz: float, *, params: DvfsParams = H100_DVFS_PARAMS
) -> PhaseFactors:
    """Return the DVFS model's energy and time factors of each phase at `clock_mhz`.

    Applying them per phase (prefill energy × `prefill_energy`, TTFT × `prefill_time`, ...) gives the
    same totals as `dvfs_prediction` with the workload's own prefill share, and the latencies too.

    Raises:
        ConfigError: a clock outside (0, max_clock_mhz].
    """
    if not 0.0 < clock_mhz <= max_clock_mhz:
        raise ConfigError(f"clock_mhz={clock_mhz} must lie in (0, {max_clock_mhz}] MHz (the maximum clock)")
    r = clock_mhz / max_clock_mhz
    pre_power, pre_time = _phase_factors(
        r, params.prefill_memory_frac, params.prefill_core_frac, params.prefill_clock_bound, params
    )
    dec_power, dec_time = _phase_factors(
        r, params.decode_memory_frac, params.decode_core_frac, params.decode_clock_bound, params
    )
    return PhaseFactors(clock_mhz, pre_power * pre_time, pre_time, dec_power * dec_time, dec_time)

"""Per-workload-class plans: a configuration per short/medium/long input × output class.

Requests are split at the trace's 33rd and 66th percentiles of input and of output length (≤ p33:
short, ≤ p66: medium, else long; the thresholds are reported). Each class gets its own SLO (one for
all, or a preset by input class: DynamoLLM's TTFT 250 / 400 / 2000 ms for short / medium / long
inputs and TBT — our TPOT — 100 ms) and arrives at its share of the rate. The plan takes each class's
least-energy feasible configuration; the best single configuration is the least-energy one feasible
for every class at once (meeting each class's SLO, and keeping up with the whole rate: Σ rate_c /
capacity_c ≤ replicas). The saving is 1 − plan / single, with a bound from both estimates' bounds
(worst case: both come from the same physical models, so their errors are in fact correlated).

Static-batching configurations (HF) are modelled with padding as in the whole-trace search: a class's
own pool pads batches of the class's requests in trace order; the single configuration serves every
class from one pool, so its batches mix the classes (and pad to the longest of them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.recommend import Recommendation, make_evaluator, saving_bounds, search
from llm_energy.recommend.search import Candidate, Evaluator, configurations

SIZE_NAMES = ("short", "medium", "long")
SLO_PRESETS: dict[str, dict[str, tuple[float, float, float]]] = {
    "dynamollm": {"ttft": (0.25, 0.40, 2.0), "tpot": (0.1, 0.1, 0.1)},
}
"""Preset → metric → bound (s) for short / medium / long *input* classes (DynamoLLM, Stojkovic et al.)."""


@dataclass(frozen=True)
class ClassSplit:
    """Thresholds and the class of every request.

    Attributes:
        input_thresholds: (p33, p66) of input length, tokens.
        output_thresholds: (p33, p66) of output length, tokens.
        input_class: 0/1/2 (short/medium/long) per request.
        output_class: 0/1/2 per request.
    """

    input_thresholds: tuple[float, float]
    output_thresholds: tuple[float, float]
    input_class: np.ndarray
    output_class: np.ndarray

    def name(self, i: int, o: int) -> str:
        """Class name, e.g. `short-in/long-out`."""
        return f"{SIZE_NAMES[i]}-in/{SIZE_NAMES[o]}-out"

    def describe(self) -> str:
        """The thresholds, in words."""
        (i1, i2), (o1, o2) = self.input_thresholds, self.output_thresholds
        return (
            f"classes at the trace's 33rd/66th percentiles: input ≤ {i1:g} short, ≤ {i2:g} medium, "
            f"else long; output ≤ {o1:g} short, ≤ {o2:g} medium, else long"
        )


def split_classes(input_tokens: np.ndarray, output_tokens: np.ndarray) -> ClassSplit:
    """Split requests into 3 × 3 classes at the 33rd/66th percentiles of input and output length."""
    lin, lout = np.asarray(input_tokens, float), np.asarray(output_tokens, float)
    ti = tuple(float(x) for x in np.percentile(lin, [33, 66]))
    to = tuple(float(x) for x in np.percentile(lout, [33, 66]))
    return ClassSplit(
        (ti[0], ti[1]),
        (to[0], to[1]),
        np.searchsorted(np.asarray(ti), lin, side="left"),
        np.searchsorted(np.asarray(to), lout, side="left"),
    )


def preset_slo(preset: str, input_class: int) -> dict[str, float]:
    """SLO bounds (s) of a preset for an input class.

    Raises:
        ConfigError: an unknown preset (the known ones are listed).
    """
    if preset not in SLO_PRESETS:
        raise ConfigError(f"unknown SLO preset {preset!r}; valid: {', '.join(SLO_PRESETS)}")
    return {metric: bounds[input_class] for metric, bounds in SLO_PRESETS[preset].items()}


@dataclass(frozen=True)
class ClassResult:
    """One class: its requests, rate share, SLO and search."""

    name: str
    requests: int
    rate_per_s: float
    slo_s: dict[str, float]
    recommendation: Recommendation
    single: Candidate | None = None
    """The best single configuration's candidate on this class."""


@dataclass(frozen=True)
class ClassPlan:
    """The per-class plan against the best single configuration (energies are totals over the trace)."""

    split: ClassSplit
    classes: list[ClassResult]
    plan_j: float | None
    plan_unc_j: float | None
    single_j: float | None
    single_unc_j: float | None
    single_label: str | None
    rate_per_s: float

    @property
    def complete(self) -> bool:
        """Every class has a feasible configuration."""
        return all(c.recommendation.choice is not None for c in self.classes)

    def saving(self) -> tuple[float, float, float] | None:
        """(saving, low, high) of the plan over the best single configuration, or None."""
        if None in (self.plan_j, self.single_j, self.plan_unc_j, self.single_unc_j):
            return None
        assert self.plan_j is not None and self.single_j is not None
        assert self.plan_unc_j is not None and self.single_unc_j is not None
        return saving_bounds(self.plan_j, self.plan_unc_j, self.single_j, self.single_unc_j)

    @property
    def plan_gpus(self) -> int:
        """GPUs the plan uses (a pool per class)."""
        return sum(c.recommendation.choice.gpus for c in self.classes if c.recommendation.choice)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        from dataclasses import asdict

        s = self.saving()
        requests = sum(c.requests for c in self.classes)
        return {
            "thresholds": {
                "input_p33_p66": list(self.split.input_thresholds),
                "output_p33_p66": list(self.split.output_thresholds),
                "rule": self.split.describe(),
            },
            "classes": [
                {
                    "name": c.name,
                    "requests": c.requests,
                    "rate_per_s": c.rate_per_s,
                    "slo_s": c.slo_s,
                    "choice": asdict(c.recommendation.choice) if c.recommendation.choice else None,
                    "closest": None if c.recommendation.choice else asdict(c.recommendation.closest()),
                    "single": asdict(c.single) if c.single else None,
                }
                for c in self.classes
            ],
            "plan_j_per_request": None if self.plan_j is None else self.plan_j / requests,
            "plan_unc_j_per_request": None if self.plan_unc_j is None else self.plan_unc_j / requests,
            "plan_gpus": self.plan_gpus,
            "single": self.single_label,
            "single_j_per_request": None if self.single_j is None else self.single_j / requests,
            "single_unc_j_per_request": None if self.single_unc_j is None else self.single_unc_j / requests,
            "saving": None if s is None else s[0],
            "saving_low": None if s is None else s[1],
            "saving_high": None if s is None else s[2],
            "note": "one pool per class; each pool's load (concurrency, idle time) at its class's rate",
        }


def plan_per_class(
    profiles: Mapping[str, EnergyProfile],
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    rate_per_s: float,
    slo_s: Mapping[str, float] | None = None,
    preset: str | None = None,
    batch_sizes: Sequence[int] | None = None,
    clocks_mhz: Sequence[float] | None = None,
    max_gpus: int | None = None,
    max_clock_mhz: float | None = None,
    load_aware: bool = True,
) -> ClassPlan:
    """Plan a configuration per workload class and compare with the best single configuration.

    Exactly one of `slo_s` (the same SLO for every class) and `preset` (an SLO per input class).

    Raises:
        ConfigError: both or neither SLO source, an unknown preset, and `recommend`'s bad inputs.
    """
    if (slo_s is None) == (preset is None):
        raise ConfigError("give an SLO or an SLO preset, not both")
    if preset is not None:
        preset_slo(preset, 0)
    ev = make_evaluator(
        profiles,
        input_tokens,
        output_tokens,
        rate_per_s,
        slo_s or {},
        max_gpus,
        max_clock_mhz,
        load_aware=load_aware,
    )
    split = split_classes(ev.lin, ev.lout)
    n = ev.lin.size
    found: list[tuple[str, np.ndarray, float, dict[str, float], Recommendation]] = []
    for i in range(3):
        for o in range(3):
            mask = (split.input_class == i) & (split.output_class == o)
            if not mask.any():
                continue  # ties at a threshold can leave a class empty
            slo = preset_slo(preset, i) if preset is not None else dict(slo_s or {})
            rate = rate_per_s * float(mask.sum()) / n
            rec = search(
                ev,
                mask,
                rate_per_s=rate,
                slo_s=slo,
                batch_sizes=batch_sizes,
                clocks_mhz=clocks_mhz,
                max_gpus=max_gpus,
            )
            found.append((split.name(i, o), mask, rate, slo, rec))
    single, singles = _best_single(ev, found, rate_per_s, batch_sizes, clocks_mhz, max_gpus)
    plan_j = plan_unc_j = None
    if all(rec.choice is not None for *_, rec in found):
        plan_j = sum(rec.choice.energy_per_request_j * m.sum() for _, m, _, _, rec in found if rec.choice)
        plan_unc_j = sum(
            rec.choice.uncertainty_per_request_j * m.sum() for _, m, _, _, rec in found if rec.choice
        )
    classes = [
        ClassResult(name, int(m.sum()), rate, slo, rec, singles.get(name))
        for name, m, rate, slo, rec in found
    ]
    single_j = single_unc_j = None
    if single is not None:
        single_j = sum(c.single.energy_per_request_j * c.requests for c in classes if c.single)
        single_unc_j = sum(c.single.uncertainty_per_request_j * c.requests for c in classes if c.single)
    return ClassPlan(split, classes, plan_j, plan_unc_j, single_j, single_unc_j, single, rate_per_s)


def _best_single(
    ev: Evaluator,
    found: list[tuple[str, np.ndarray, float, dict[str, float], Recommendation]],
    rate_per_s: float,
    batch_sizes: Sequence[int] | None,
    clocks_mhz: Sequence[float] | None,
    max_gpus: int | None,
) -> tuple[str | None, dict[str, Candidate]]:
    """The least-energy configuration feasible for every class at once, and its candidate per class."""
    best: tuple[float, str, dict[str, Candidate]] | None = None
    for name, b, clock in configurations(ev, batch_sizes, clocks_mhz, max_gpus):
        per_class: dict[str, Candidate] = {}
        busy = 0.0  # replicas' worth of time the whole rate needs
        total_j = 0.0
        ok = True
        everything = np.ones(ev.lin.size, bool)  # one pool: static batches mix the classes
        for cname, mask, rate, slo, _ in found:
            c = ev.candidate(
                name, b, clock, mask, rate, slo, max_gpus, pool=everything, pool_rate_per_s=rate_per_s
            )
            if c is None or not (c.meets_slo and c.fits_memory):
                ok = False
                break
            per_class[cname] = c
            busy += rate / (c.throughput_per_s / c.replicas)
            total_j += c.energy_per_request_j * float(mask.sum())
        most = max(max_gpus // ev.profiles[name].gpu_count, 1) if max_gpus else 1
        if not ok or math.ceil(busy - 1e-9) > most:
            continue
        if best is None or total_j < best[0]:
            label = next(iter(per_class.values())).label().split(" × ")[0]
            replicas = max(math.ceil(busy - 1e-9), 1)
            best = (total_j, label + (f" × {replicas} replicas" if replicas > 1 else ""), per_class)
    if best is None:
        return None, {}
    return best[1], best[2]


__all__ = [
    "SLO_PRESETS",
    "ClassPlan",
    "ClassResult",
    "ClassSplit",
    "plan_per_class",
    "preset_slo",
    "split_classes",
]

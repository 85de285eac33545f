"""Candidates and the search: every profile × batch size × (modelled) GPU clock × replicas.

Each profile is one measured configuration (engine, mode, GPU, TP size as its GPU count). Every figure of
a candidate comes from the profile's **physical model** (`modeling.physical`, through the `MODELS`
registry: the model `estimate` uses by default), never from the calibration grid: at a request group's
mean lengths it says how long a batch of B takes to prefill (the TTFT a request sees when its batch
starts) and how long a decode step takes (its TPOT), and it costs every request of the group in a batch
of B equal requests. A candidate's B is the engine's batch knob (vLLM's `max_num_seqs`, HF's batch
size), so the profile's own calibrated `max_num_seqs` does not cap it; only the KV cache does (a request
runs at min(B, the batch the KV cache holds at its lengths)). A candidate is feasible when it meets
every SLO bound, B fits the KV cache at the group's mean shape (`fits_memory`) and B / T(B) per replica ×
replicas keeps up with the rate, with replicas limited by `--gpus`. B is searched over the batch sizes
the profile was calibrated at (inside the model's calibrated range); the "largest feasible" batch is the
largest calibrated batch that fits the KV cache at the group's mean shape (beyond the calibration the
model extrapolates, and memory other than the KV cache — activations, HF's logits — is not modelled).
A GPU clock below the maximum applies the DVFS model's per-phase factors (`llm_energy.control.dvfs`,
labelled `modelled`). Energy is board energy, idle included, with the physical model's 1-σ
uncertainty (leave-one-out ⊕ meter, widened outside the calibrated range), summed over requests.

Engines are load-aware (`llm_energy.recommend.load`, a model; `load_aware=False`: full batches). A
continuous engine at the rate per replica runs n = min(B, λ · E2E(n)) requests at once (Little's
law), so energy per request is the physical model's at batch n plus idle power over the time no
request is in flight, and latencies are those at batch n; at a rate that fills B both equal the
full-batch figures, which every candidate keeps (`energy_full_batch_j`, `*_full_batch_s`). A
continuous engine's TTFT is a request's own prefill (a batch of 1) plus the decode step of the n
running requests it joins: vLLM schedules a new request's prefill into the next step beside the
running decodes (chunked prefill); it does not wait for a batch of prompts (`ttft_full_batch_s`, the
prefill of a batch of B, is the figure before; measured on the H100 at 3.2 / 7.6 / 19 req/s: p90 TTFT
73 / 73 / 534 ms). The search ranks by the load-aware figure. Queueing delay and bursts are not
modelled. Throughput (capacity) is that of full batches, B / E2E(B).

Static-batching engines (descriptor `batching="static"`: HF eager/compiled/cudagraphs, hf-spec) are
modelled as they run: the requests in trace order in batches of B, each padded to its longest prompt
and output, every padded batch costed by the physical model at its padded shape (the validation's
`physical-padded` estimate, `validation.models.physical_padded_j`). A request's energy is a row of its padded
batch, its TTFT the batch's prefill, its TPOT the batch's decode step, its E2E the whole batch (every
row returns at its end). Assumption: static engines pad every batch to its longest prompt and output
(measured on the H100, HF eager at batch 64 on 500 Azure conv requests: the per-request model −66%,
the padded one −2.4%). Load: at a rate that cannot fill B a static engine is modelled as running
partial batches of k = round(n) (the requests that arrive while one batch runs; it does not wait to
fill B), n from the same fixed point on the unpadded mean-shape batch time (padding makes real batches
longer, so n and the saving of batching are slightly understated); energy and latency are those of
padded batches of k in trace order, plus idle power below one request in flight. Continuous engines
(vLLM, hf-paged, the simulated engine) keep the per-request model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from llm_energy.control.dvfs import PhaseFactors, phase_factors
from llm_energy.engines import ENGINES
from llm_energy.errors import ConfigError
from llm_energy.meters.gpus import max_sm_clock_mhz
from llm_energy.modeling.models import RequestEstimate, model_for
from llm_energy.modeling.padded import PaddedBatches, padded_shapes
from llm_energy.modeling.physical import PhysicalModel
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.recommend.candidate import Candidate, check_slo, latency
from llm_energy.recommend.load import (
    DEFAULT_IDLE_POWER_UNC_W,
    DEFAULT_IDLE_POWER_W,
    OperatingPoint,
    operating_point,
)
from llm_energy.workloads.slo import SLO_METRICS

_NO_CLOCK = PhaseFactors(0.0, 1.0, 1.0, 1.0, 1.0)


def is_hf_eager(profile: EnergyProfile) -> bool:
    """Whether a profile is the naive baseline: HF transformers in eager mode."""
    return profile.engine == "hf" and profile.mode == "eager"


def pads_batches(profile: EnergyProfile) -> bool:
    """Whether a profile's engine runs static batches padded to their longest prompt and output.

    Assumption: static engines pad every batch to its longest prompt and output (measured on the H100, HF
    eager at batch 64 on 500 Azure conv requests: the physical model per request −66%, per padded batch
    −2.4%).
    """
    return profile.engine in ENGINES and ENGINES[profile.engine].descriptor.batching == "static"


def search_model(profile: EnergyProfile, name: str = "") -> PhysicalModel:
    """The profile's physical model without its calibrated `max_num_seqs` (a candidate's B sets it).

    Raises:
        ConfigError: the profile has no physical model (it is refitted with `llm-energy fit`).
    """
    if profile.physical is None:
        raise ConfigError(
            f"profile {name or profile.describe()} has no physical model, which the recommender needs "
            "(times, memory and energy): refit it with `llm-energy fit`"
        )
    return replace(profile.physical, max_num_seqs=None)


def calibrated_batches(profile: EnergyProfile) -> list[int]:
    """The batch sizes the profile was calibrated at (the searched ones: inside the model's range)."""
    return [int(b) for b in profile.grid.batches]


def batch_times(model: PhysicalModel, batch: Any, lin: Any, lout: Any) -> tuple[np.ndarray, np.ndarray]:
    """(Prefill seconds of a batch of `batch` prompts, seconds of one decode step) at these lengths."""
    lo = np.maximum(np.asarray(lout, float), 2.0)
    cost = model.batch_cost(batch, lin, lo)
    step: np.ndarray = cost.decode_s / (lo - 1)
    return cost.prefill_s, step


def physical_padded(
    model: PhysicalModel, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: int
) -> PaddedBatches:
    """The requests in order in static batches of `batch_size`, each costed at its padded shape.

    Every batch is the physical model's batch of its rows at its longest input and output (the
    validation's `physical-padded`, `models.physical_padded_j`, batch by batch): energy per row = the
    batch's / its rows, the 1-σ widened outside the calibrated range, its prefill time and decode step.

    Raises:
        ConfigError: `batch_size` < 1.
    """
    rows, lin, lout = padded_shapes(input_tokens, output_tokens, batch_size)
    cost = model.batch_cost(rows, lin, lout)
    total = cost.prefill_j + cost.decode_j
    rel = model.errors.relative(model.coverage.octaves_outside(rows, lin, lout))
    step_s, _ = model.decode_step(rows, rows * (lin + lout / 2))
    per_row = np.maximum(rows, 1.0)
    return PaddedBatches(
        rows,
        lin,
        lout,
        cost.prefill_j / per_row,
        cost.decode_j / per_row,
        rel * total / per_row,
        np.asarray(cost.prefill_s, float),
        np.asarray(step_s, float),
    )


@dataclass(frozen=True)
class _Padded:
    """Per request (aligned with the trace; NaN outside the pool): its padded batch's row and timings."""

    prefill_j: np.ndarray
    decode_j: np.ndarray
    uncertainty_j: np.ndarray
    prefill_s: np.ndarray
    """The batch's prefill: the request's TTFT."""
    decode_step_s: np.ndarray
    """The batch's decode step: the request's TPOT."""
    decode_s: np.ndarray
    """The batch's decode steps (its longest output − 1) × the step: after its TTFT, until its E2E."""
    rows: np.ndarray
    """Requests in the batch (a request's share of the batch's run time is 1 / rows)."""


class Evaluator:
    """Evaluates configurations on subsets of one trace; per-request energies are computed once.

    Args:
        profiles: Name → profile (each needs its physical model).
        input_tokens: Input lengths of the trace.
        output_tokens: Output lengths of the trace.
        max_clock_mhz: Maximum SM clock for the DVFS model (default: from each profile's GPU name).
        idle_power_w: GPU power with no request in flight, W, for the load model (default: each
            profile's own idle power, `PhysicalModel.idle_power_w`; `load.DEFAULT_IDLE_POWER_W` where
            the profile has none).
        idle_power_unc_w: Its bound, W.
        load_aware: False: every batch full (the model before `load.py`, for comparison and tests).

    Raises:
        ConfigError: an empty trace, a negative idle power, or a profile without a physical model.
    """

    def __init__(
        self,
        profiles: Mapping[str, EnergyProfile],
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        *,
        max_clock_mhz: float | None = None,
        idle_power_w: float | None = None,
        idle_power_unc_w: float = DEFAULT_IDLE_POWER_UNC_W,
        load_aware: bool = True,
    ) -> None:
        self.profiles = dict(profiles)
        self.lin = np.asarray(input_tokens, float)
        self.lout = np.asarray(output_tokens, float)
        if self.lin.size == 0:
            raise ConfigError("the trace is empty")
        if (idle_power_w is not None and not idle_power_w >= 0) or not idle_power_unc_w >= 0:
            raise ConfigError(f"idle power must be ≥ 0 W, got {idle_power_w} ± {idle_power_unc_w}")
        self.max_clock_mhz = max_clock_mhz
        self.idle_power_w = idle_power_w
        self.idle_power_unc_w = idle_power_unc_w
        self.load_aware = load_aware
        self._physical = {n: search_model(p, n) for n, p in self.profiles.items()}
        # Through the registry: the model `estimate` runs by default, its batch knob left to the candidate.
        self._models = {
            n: model_for(replace(p, physical=self._physical[n]), "physical") for n, p in self.profiles.items()
        }
        self._requests: dict[tuple[str, float], RequestEstimate] = {}
        self._padded: dict[tuple[str, int, bytes], _Padded] = {}

    @property
    def evaluations(self) -> int:
        """Model evaluations of the trace so far: one per (profile, batch), whatever the clocks or classes."""
        return len(self._requests)

    def idle_power(self, name: str) -> float:
        """Idle power of a profile's GPU for the load model, W: the override, the profile's, the default."""
        if self.idle_power_w is not None:
            return self.idle_power_w
        own = self._physical[name].idle_power_w
        return own if own > 0 else DEFAULT_IDLE_POWER_W

    def _energy(self, name: str, batch: float) -> RequestEstimate:
        """Per-request energy of the trace at batch knob `batch` (each request at min(B, its KV limit)).

        A fractional batch is a load-aware concurrency: the physical model runs at any batch ≥ 1.
        """
        key = (name, float(batch))
        if key not in self._requests:
            self._requests[key] = self._models[name].request_energy(self.lin, self.lout, float(batch))
        return self._requests[key]

    def _padded_energy(self, name: str, batch: int, pool: np.ndarray) -> _Padded:
        """The requests of `pool`, in trace order, in padded batches of `batch`, spread per request."""
        key = (name, batch, np.packbits(pool).tobytes())
        if key not in self._padded:
            index = np.flatnonzero(pool)
            pad = physical_padded(self._physical[name], self.lin[index], self.lout[index], batch)

            def spread(values: np.ndarray) -> np.ndarray:
                out = np.full(self.lin.size, np.nan)
                out[index] = pad.per_request(values)
                return out

            self._padded[key] = _Padded(
                spread(pad.prefill_j),
                spread(pad.decode_j),
                spread(pad.uncertainty_j),
                spread(pad.prefill_s),
                spread(pad.decode_step_s),
                spread(pad.batch_s - pad.prefill_s),
                spread(pad.rows),
            )
        return self._padded[key]

    def max_clock(self, name: str) -> float:
        """The maximum SM clock the DVFS model scales from, for a profile."""
        return self.max_clock_mhz or max_sm_clock_mhz(self.profiles[name].gpu_name)

    def memory_limit(self, name: str, lin: float, lout: float) -> float:
        """Largest batch whose KV cache fits at these lengths (the physical model's, without max_num_seqs)."""
        return float(self._physical[name].max_batch(lin, lout))

    def largest_feasible(self, name: str, lin: float, lout: float) -> int:
        """The largest calibrated batch size that fits the KV cache at these lengths (1 at least)."""
        limit = self.memory_limit(name, lin, lout)
        fitting = [b for b in calibrated_batches(self.profiles[name]) if b <= limit]
        return max(fitting) if fitting else max(int(limit), 1)

    def candidate(
        self,
        name: str,
        batch: int | None,
        clock_mhz: float | None,
        mask: np.ndarray,
        rate_per_s: float,
        slo_s: Mapping[str, float],
        max_gpus: int | None,
        pool: np.ndarray | None = None,
        pool_rate_per_s: float | None = None,
    ) -> Candidate | None:
        """Evaluate a configuration on the requests in `mask` at `rate_per_s` (None: no request kept).

        `batch` None: the largest feasible batch at the mask's mean shape (`largest_feasible`).
        `pool`: the requests served together (default: `mask`'s). Static engines batch the pool's
        requests in trace order, so a class served by one configuration shared with other classes
        (`classes._best_single`) is padded by its neighbours of other classes. With `pool_rate_per_s`
        (the rate the pool arrives at) the load (concurrency, idle time) is the pool's: its mean
        lengths at that rate, and `mask`'s requests run at it.
        """
        prof = self.profiles[name]
        model = self._physical[name]
        if not mask.any():
            return None
        f = phase_factors(clock_mhz, self.max_clock(name)) if clock_mhz else _NO_CLOCK
        lin_m, lout_m = float(self.lin[mask].mean()), float(self.lout[mask].mean())
        limit = self.memory_limit(name, lin_m, lout_m)
        b = self.largest_feasible(name, lin_m, lout_m) if batch is None else batch
        est = self._energy(name, b)
        kept = est.kept & mask
        n = int(kept.sum())
        if n == 0:
            return None
        most = max(max_gpus // prof.gpu_count, 1) if max_gpus else 1
        static = pads_batches(prof)
        idle_w = self.idle_power(name)

        def mean_shape(ns: Any, lin: float, lout: float) -> tuple[Any, Any, Any]:
            """(TTFT, TPOT, E2E) of a batch of `ns` at these mean lengths, unpadded, at the clock."""
            prefill_s, step_s = batch_times(model, ns, lin, lout)
            ttft, step = prefill_s * f.prefill_time, step_s * f.decode_time
            return ttft, step, ttft + max(lout - 1, 0) * step

        def joining_shape(ns: Any, lin: float, lout: float) -> tuple[Any, Any, Any]:
            """(TTFT, TPOT, E2E) of a request joining `ns` running ones (continuous batching), at the clock.

            TTFT: its own prefill (a batch of 1) plus the decode step of the batch it joins (`load`).
            """
            step = batch_times(model, ns, lin, lout)[1] * f.decode_time
            ttft = batch_times(model, 1.0, lin, lout)[0] * f.prefill_time + step
            return ttft, step, ttft + max(lout - 1, 0) * step

        def joules(e: RequestEstimate | _Padded) -> tuple[float, float]:
            pre, dec = float(e.prefill_j[kept].sum()), float(e.decode_j[kept].sum())
            total = pre * f.prefill_energy + dec * f.decode_energy
            unc_j = float(e.uncertainty_j[kept].sum())
            return total, unc_j * (total / (pre + dec) if pre + dec > 0 else 1.0)

        if static:
            # Static engines pad every batch to its longest prompt and output: the pool's requests in
            # trace order, B at a time, each batch at its padded shape (the validation's physical-padded).
            members = est.kept & (mask if pool is None else pool | mask)
            pad = self._padded_energy(name, b, members)
            full = self._static_times(pad, kept, f)
            busy_s = float((full[3] / pad.rows[kept]).sum())  # each request's share of its batch's run
            per_replica = n / busy_s if busy_s > 0 else math.inf
        else:
            ttft_b, tpot_b, e2e_b = mean_shape(float(b), lin_m, lout_m)
            full = (float(ttft_b), float(tpot_b), float(e2e_b), np.zeros(0))
            per_replica = b / full[2] if full[2] > 0 else math.inf
        replicas = min(max(math.ceil(rate_per_s / per_replica), 1), most)
        # The load: the pool's (shared by classes) or the mask's own requests, per replica.
        if pool is not None and pool_rate_per_s is not None:
            p_lin, p_lout = float(self.lin[pool].mean()), float(self.lout[pool].mean())
            need = pool_rate_per_s * float(mean_shape(float(b), p_lin, p_lout)[2]) / b
            load_rate, load_replicas = pool_rate_per_s, min(max(math.ceil(need), 1), most)
        else:
            p_lin, p_lout, load_rate, load_replicas = lin_m, lout_m, rate_per_s, replicas
        point = (
            operating_point(
                lambda ns: (mean_shape if static else joining_shape)(ns, p_lin, p_lout)[2],
                load_rate / load_replicas,
                b,
                float(b),  # the model runs at any batch: the fixed point is searched up to B
            )
            if self.load_aware
            else OperatingPoint(float(b), 0.0, True)
        )
        full_energy = joules(pad if static else est)[0]
        if static:
            # Partial batches of the k requests that arrive while one runs (no waiting to fill B).
            k = b if point.full else max(1, min(b, round(point.concurrency)))
            part = pad if k == b else self._padded_energy(name, k, members)
            ttft, tpot, per_request_s, _ = self._static_times(part, kept, f)
            energy, unc = joules(part)
            concurrency = float(k)
        else:
            # At a rate that fills B: the full-batch estimate itself.
            concurrency = float(b) if point.full else round(point.concurrency, 3)
            energy, unc = joules(est if point.full else self._energy(name, concurrency))
            if point.full:  # n would exceed B: a request waits for a slot (at least a batch's prefill)
                ttft, tpot, per_request_s, _ = full
            else:  # its own prefill beside the running decodes (chunked prefill), no queueing
                ttft, tpot, per_request_s = (float(x) for x in joining_shape(concurrency, lin_m, lout_m))
        idle_j = idle_w * point.idle_s_per_request * n
        energy, unc = energy + idle_j, unc + self.idle_power_unc_w * point.idle_s_per_request * n
        values = {"ttft": ttft, "tpot": tpot, "e2e": per_request_s}
        return Candidate(
            profile=name,
            engine=prof.engine,
            mode=prof.mode,
            batch_size=b,
            energy_per_request_j=energy / n,
            uncertainty_per_request_j=unc / n,
            ttft_s=ttft,
            tpot_s=tpot,
            e2e_s=per_request_s,
            throughput_per_s=per_replica * replicas,
            meets_slo=all(values[m] <= bound for m, bound in slo_s.items()),
            keeps_up=per_replica * replicas >= rate_per_s,
            fits_memory=b <= limit,
            replicas=replicas,
            gpus=replicas * prof.gpu_count,
            clock_mhz=clock_mhz,
            largest_feasible=batch is None,
            source="modelled (DVFS)" if clock_mhz else "profile",
            batching="static" if static else "continuous",
            concurrency=concurrency,
            idle_j_per_request=idle_j / n,
            energy_full_batch_j=full_energy / n,
            ttft_full_batch_s=full[0],
            tpot_full_batch_s=full[1],
            e2e_full_batch_s=full[2],
        )

    @staticmethod
    def _static_times(
        pad: _Padded, kept: np.ndarray, f: PhaseFactors
    ) -> tuple[float, float, float, np.ndarray]:
        """(TTFT, TPOT, E2E) means over `kept` of their padded batches, and each one's batch run (s)."""
        batch_s = pad.prefill_s[kept] * f.prefill_time + pad.decode_s[kept] * f.decode_time
        ttft = float(pad.prefill_s[kept].mean()) * f.prefill_time
        tpot = float(pad.decode_step_s[kept].mean()) * f.decode_time
        return ttft, tpot, float(batch_s.mean()), batch_s  # every row returns at its batch's end


def configurations(
    ev: Evaluator,
    batch_sizes: Sequence[int] | None,
    clocks_mhz: Sequence[float] | None,
    max_gpus: int | None,
) -> Iterator[tuple[str, int, float | None]]:
    """Yield every (profile, batch, clock) to search; clocks at the maximum count as the default.

    Raises:
        ConfigError: a clock outside (0, the GPU's maximum], a batch < 1, or `--gpus` below every
            profile's GPU count.
    """
    if batch_sizes is not None and any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be ≥ 1, got {list(batch_sizes)}")
    usable = [n for n, p in ev.profiles.items() if max_gpus is None or p.gpu_count <= max_gpus]
    if not usable:
        raise ConfigError(f"--gpus {max_gpus} is fewer than every profile's GPU count")
    for name in usable:
        clocks: list[float | None] = [None]
        for clock in clocks_mhz or ():
            top = ev.max_clock(name)
            if not 0 < clock <= top:
                raise ConfigError(
                    f"GPU clock {clock:g} MHz is outside the supported range (0, {top:g}] MHz of "
                    f"{ev.profiles[name].gpu_name} ({name})"
                )
            if clock < top:
                clocks.append(float(clock))
        sizes = batch_sizes or calibrated_batches(ev.profiles[name])
        for b in sizes:
            for c in dict.fromkeys(clocks):
                yield name, int(b), c


__all__ = [
    "SLO_METRICS",
    "Candidate",
    "Evaluator",
    "check_slo",
    "configurations",
    "is_hf_eager",
    "latency",
    "pads_batches",
]

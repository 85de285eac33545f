"""One `EnergyModel` protocol and one `MODELS` registry: every way of turning requests into joules.

`MODELS[name](profile)` gives a model whose `request_energy(input_tokens, output_tokens, batch_size)` returns
each request's prefill and decode energy and time, its 1-σ uncertainty, the batch it ran at and how far (in
octaves) it lies outside the calibrated range. `estimate`, `validate` and `recommend` look a method up here
instead of branching on its name.

* `physical` (default): the roofline-structured model (`physical.py`), batch limited by KV capacity and the
  engine's max_num_seqs.
* `binned`: the calibration grid through log-spaced length bins (the seed study's method, our bins).
* `p1`: the seed study's exact power-of-two rule (requests beyond 8192 in / 512 out are dropped and counted).
* `parametric`: the earlier three-term fit, per request.
* `flops`: FLOPs / peak FLOP/s × board power (the baseline the seed study criticises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from llm_energy.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from llm_energy.modeling.profile import EnergyProfile

FIXED_BIN_CAPS = (131072, 16384)
"""Largest input and output the fixed log bins of `binned` cover (2 bins per octave)."""


@dataclass(frozen=True)
class RequestEstimate:
    """Per-request estimate, arrays aligned with the requests (a dropped request is NaN and not kept).

    Attributes:
        prefill_j, decode_j: Energy per phase (board energy, idle included), joules.
        prefill_s, decode_s: Time per phase of the batch the request ran in, seconds.
        uncertainty_j: 1-σ of prefill + decode.
        batch_size: Batch the request ran at.
        octaves_outside: log2 distance outside the calibrated range (0 inside).
        kept: False where the method drops the request (p1's caps).
        per_bin: The method's bin table, when it has one.
    """

    prefill_j: np.ndarray
    decode_j: np.ndarray
    prefill_s: np.ndarray
    decode_s: np.ndarray
    uncertainty_j: np.ndarray
    batch_size: np.ndarray
    octaves_outside: np.ndarray
    kept: np.ndarray
    per_bin: pd.DataFrame | None = None

    @property
    def total_j(self) -> np.ndarray:
        """Prefill + decode per request."""
        out: np.ndarray = self.prefill_j + self.decode_j
        return out


class EnergyModel(Protocol):
    """Energy and time of requests, each run at a batch size (given, or the model's own choice)."""

    name: ClassVar[str]
    streams: ClassVar[bool]
    """True when requests are independent (a trace can be estimated chunk by chunk)."""

    def request_energy(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: Any = None
    ) -> RequestEstimate:
        """Estimate each request (`batch_size`: scalar or per request; None = the model's choice)."""
        ...


def _arrays(lin: Any, lout: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(lin, float), np.asarray(lout, float)


class PhysicalEnergy:
    """The physical model of a profile (see `physical.py`)."""

    name: ClassVar[str] = "physical"
    streams: ClassVar[bool] = True

    def __init__(self, profile: EnergyProfile) -> None:
        if profile.physical is None:
            raise ConfigError(
                f"profile {profile.describe()} has no physical model: refit it with `llm-energy fit`"
            )
        self.model = profile.physical

    def request_energy(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: Any = None
    ) -> RequestEstimate:
        """Each request in a batch of equal requests at `batch_size` (default: KV capacity / max_num_seqs)."""
        lin, lout = _arrays(input_tokens, output_tokens)
        m = self.model
        cap = m.max_batch(lin, lout)
        batch = (
            cap
            if batch_size is None
            else np.minimum(np.broadcast_to(np.asarray(batch_size, float), lin.shape), cap)
        )
        cost = m.batch_cost(batch, lin, lout)
        pre, dec = cost.prefill_j / batch, cost.decode_j / batch
        octaves = m.coverage.octaves_outside(batch, lin, lout)
        unc = m.errors.relative(octaves) * (pre + dec)
        return RequestEstimate(
            pre, dec, cost.prefill_s, cost.decode_s, unc, batch, octaves, np.ones(lin.shape, bool)
        )


class BinnedEnergy:
    """The calibration grid through length bins: log-spaced (`binned`) or the seed's rule (`p1`)."""

    name: ClassVar[str] = "binned"
    streams: ClassVar[bool] = False
    rule: ClassVar[str] = "log"

    def __init__(self, profile: EnergyProfile) -> None:
        self.profile = profile

    def request_energy(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: Any = None
    ) -> RequestEstimate:
        """Every request of a bin at the bin's representative lengths and batch."""
        from llm_energy.modeling.binned import BinnedModel
        from llm_energy.modeling.bins import log_bins

        lin, lout = _arrays(input_tokens, output_tokens)
        grid = self.profile.grid
        bins = None if self.rule == "p1" else log_bins(*FIXED_BIN_CAPS)
        # The batch per bin is the engine's limit at the bin's lengths, as for every other model, when the
        # profile knows it; the largest measured batch per shape is a poor guide on an irregular grid.
        phys = self.profile.physical
        model = BinnedModel(
            grid,
            self.profile.feasible,
            method="p1" if self.rule == "p1" else "log",
            bins=bins,
            max_batch=None if phys is None else phys.max_batch,
        )
        if batch_size is not None and np.ndim(batch_size):
            raise ConfigError(f"{self.name}: one batch size for the whole trace, not one per request")
        r = model.estimate(lin, lout, None if batch_size is None else int(batch_size))
        assert r.batch_size is not None
        b = np.nan_to_num(r.batch_size, nan=1.0)
        steps = np.maximum(lout - 1, 0)
        pre_s = np.asarray(grid.prefill_batch_s(b, lin), float)
        dec_s = steps * np.asarray(grid.decode_step_s(b, lin, np.maximum(lout, 2)), float)
        cov = _grid_octaves(grid, b, lin, lout)
        # Outside the grid, per-token energy is held at its edge: widen the bound as the physical model does.
        per_octave = 0.03 if phys is None else phys.errors.per_octave
        unc = np.hypot(r.uncertainty_j, per_octave * cov * r.total_j)
        return RequestEstimate(r.prefill_j, r.decode_j, pre_s, dec_s, unc, r.batch_size, cov, r.kept, r.bins)


class P1Energy(BinnedEnergy):
    """The seed study's power-of-two bins (requests beyond the last edges dropped)."""

    name: ClassVar[str] = "p1"
    rule: ClassVar[str] = "p1"


def _grid_octaves(grid: Any, batch: np.ndarray, lin: np.ndarray, lout: np.ndarray) -> np.ndarray:
    """Octaves outside the grid's axes (where a grid holds per-token energy at its edge)."""
    total = np.zeros(lin.shape)
    for x, axis in ((lin, grid.inputs), (lout, grid.outputs), (batch, grid.batches)):
        xv = np.maximum(np.asarray(x, float), 1.0)
        total = total + np.maximum(0, np.log2(xv / axis[-1])) + np.maximum(0, np.log2(axis[0] / xv))
    return total


class ParametricEnergy:
    """The earlier three-term fit (energy only; times from the grid), per request."""

    name: ClassVar[str] = "parametric"
    streams: ClassVar[bool] = True

    def __init__(self, profile: EnergyProfile) -> None:
        self.profile = profile

    def request_energy(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: Any = None
    ) -> RequestEstimate:
        """Each request at `batch_size` (default: the physical model's batch, else the grid's largest)."""
        lin, lout = _arrays(input_tokens, output_tokens)
        prof = self.profile
        if batch_size is not None:
            b = np.broadcast_to(np.asarray(batch_size, float), lin.shape)
        elif prof.physical is not None:
            b = prof.physical.max_batch(lin, lout)
        else:
            b = np.full(lin.shape, float(prof.grid.batches[-1]))
        pre, dec = prof.parametric.request_energy_j(b, lin, lout)
        rel = max(prof.parametric.prefill_rms_rel_error, prof.parametric.decode_rms_rel_error)
        steps = np.maximum(lout - 1, 0)
        pre_s = np.asarray(prof.grid.prefill_batch_s(b, lin), float)
        dec_s = steps * np.asarray(prof.grid.decode_step_s(b, lin, np.maximum(lout, 2)), float)
        octaves = _grid_octaves(prof.grid, b, lin, lout)
        unc = np.sqrt(rel**2 + (0.03 * octaves) ** 2) * (pre + dec)
        return RequestEstimate(pre, dec, pre_s, dec_s, unc, b, octaves, np.ones(lin.shape, bool))


class FlopsEnergy:
    """FLOPs / (peak FLOP/s) × board power: no batch, no memory traffic, no idle (the naive baseline)."""

    name: ClassVar[str] = "flops"
    streams: ClassVar[bool] = True

    def __init__(self, profile: EnergyProfile, utilisation: float = 1.0) -> None:
        from llm_energy.architectures import load_architecture
        from llm_energy.meters.gpus import gpu_spec
        from llm_energy.modeling.flops import FlopsModel

        self.model = FlopsModel(
            load_architecture(profile.model), gpu_spec(profile.gpu_name), utilisation=utilisation
        )

    def request_energy(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, batch_size: Any = None
    ) -> RequestEstimate:
        """Each request's FLOPs at peak."""
        lin, lout = _arrays(input_tokens, output_tokens)
        pre, dec = self.model.estimate(lin, lout)
        watts = self.model.gpu.tdp_w
        zeros = np.zeros(lin.shape)
        b = (
            np.ones(lin.shape)
            if batch_size is None
            else np.broadcast_to(np.asarray(batch_size, float), lin.shape)
        )
        return RequestEstimate(pre, dec, pre / watts, dec / watts, zeros, b, zeros, np.ones(lin.shape, bool))


MODELS: dict[str, Callable[[EnergyProfile], EnergyModel]] = {
    "physical": PhysicalEnergy,
    "binned": BinnedEnergy,
    "p1": P1Energy,
    "parametric": ParametricEnergy,
    "flops": FlopsEnergy,
}
"""Method name → constructor from a profile. Register a new model here (or `register_model`)."""

DEFAULT_MODEL = "physical"


def register_model(name: str, factory: Callable[[EnergyProfile], EnergyModel]) -> None:
    """Add a model to the registry (from outside the package, too)."""
    MODELS[name] = factory


def model_for(profile: EnergyProfile, method: str | None = None) -> EnergyModel:
    """The model `method` (default: physical) of `profile`.

    Raises:
        ConfigError: unknown method (the valid ones are listed), or the profile lacks what it needs.
    """
    name = method or DEFAULT_MODEL
    if name not in MODELS:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](profile)

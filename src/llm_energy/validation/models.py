"""Each model's estimate of a measured validation run, beside the measurement (`llm-energy validate`).

Per-request models run every request at the run's batch size (the seed's binning); a static run is also
estimated batch by batch at each padded shape (`physical-padded`, `binned-padded`, `parametric-padded`), a
continuous run by replaying the engine's batching on the physical model (`physical-continuous`). The FLOPs
baselines stand beside them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.modeling.padded import padded_batches, padded_shapes
from llm_energy.modeling.profile import EnergyProfile
from llm_energy.validation.offline import ValidationRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelError:
    """One model's estimate of a validation run, against the measurement."""

    method: str
    estimate_j: float
    uncertainty_j: float
    measured_j: float

    @property
    def ratio(self) -> float:
        """Estimate / measured."""
        return self.estimate_j / self.measured_j if self.measured_j > 0 else float("nan")

    @property
    def rel_error(self) -> float:
        """(estimate − measured) / measured."""
        return self.ratio - 1.0

    def to_dict(self) -> dict[str, float | str]:
        """JSON-ready representation, with ratio and relative error."""
        return {**asdict(self), "ratio": self.ratio, "rel_error": self.rel_error}


def padded_estimate_j(profile: EnergyProfile, run: ValidationRun) -> tuple[float, float, float, float]:
    """Binned and parametric estimates of a static run, batch by batch at each batch's padded shape.

    Returns:
        (binned J, its uncertainty J, parametric J, its uncertainty J).
    """
    pad = padded_batches(
        profile.grid, np.asarray(run.input_tokens), np.asarray(run.output_tokens), run.batch_size
    )
    b, lin, lout = pad.rows, pad.input_tokens, pad.output_tokens
    p_pre, p_dec = profile.parametric.batch_energy_j(b, lin, lout)  # per whole padded batch
    rel = max(profile.parametric.prefill_rms_rel_error, profile.parametric.decode_rms_rel_error)
    binned, binned_unc = pad.energy_j, pad.energy_uncertainty_j
    param = float((p_pre + p_dec).sum())
    param_unc = rel * param + binned_unc
    return binned, binned_unc, param, param_unc


def physical_padded_j(profile: EnergyProfile, run: ValidationRun) -> tuple[float, float]:
    """The physical model of a static run: each padded batch at its longest input and output (J, 1-σ J)."""
    model = profile.physical
    assert model is not None
    rows, lin, lout = padded_shapes(
        np.asarray(run.input_tokens), np.asarray(run.output_tokens), run.batch_size
    )
    cost = model.batch_cost(rows, lin, lout)
    total = cost.prefill_j + cost.decode_j
    rel = model.errors.relative(model.coverage.octaves_outside(rows, lin, lout))
    return float(total.sum()), float((rel * total).sum())


def compare(run: ValidationRun, profile: EnergyProfile) -> list[ModelError]:
    """Estimates of the run's requests by each model, beside the measured energy.

    Per-request models run every request at the run's batch size (the seed's binning); for static
    runs, `binned-padded` and `parametric-padded` also estimate each padded batch at its shape.
    `flops` is the ideal 2 × params × tokens (+ attention) at peak FLOP/s and board power;
    `flops-50%` the common half-utilisation variant.

    Raises:
        ConfigError: the run measured no GPU energy (it ran without a GPU), or a request the profile
            cannot estimate.
    """
    from llm_energy.estimate import estimate_trace

    if not run.energy_j > 0:
        raise ConfigError(
            f"the run of {run.trace} measured no GPU energy ({run.energy_j:g} J: it ran without a GPU), "
            "so there is nothing to compare the models' GPU estimates with; measure on a GPU, or with "
            "--engine simulated"
        )
    if profile.model != run.model:
        logger.warning("profile is for %s but the run is %s", profile.model, run.model)
    lin = np.asarray(run.input_tokens, float)
    lout = np.asarray(run.output_tokens, float)
    batch = min(run.batch_size, run.requests)
    out: list[ModelError] = []
    flops: tuple[float, float] | None = None
    methods = [m for m in ("physical", "binned", "p1", "parametric") if m != "physical" or profile.physical]
    for method in methods:
        est = estimate_trace(lin, lout, profile, method=method, batch_size=batch)
        if est.dropped:
            # p1 drops requests above its caps; scale its per-request mean to the whole sample.
            scale = run.requests / max(est.requests, 1)
            out.append(
                ModelError(
                    f"{method} (×{scale:.2f} for {est.dropped} dropped)",
                    est.total_j * scale,
                    est.uncertainty_j * scale,
                    run.energy_j,
                )
            )
        else:
            out.append(ModelError(method, est.total_j, est.uncertainty_j, run.energy_j))
        if flops is None:
            flops = (est.flops_j, est.flops_half_util_j)
        if method == "physical" and run.batching == "continuous":
            from llm_energy.modeling.continuous import run_continuous

            assert profile.physical is not None
            replay = run_continuous(profile.physical, lin, lout, max_num_seqs=run.batch_size)
            rel = est.uncertainty_j / est.total_j if est.total_j else 0.0
            out.append(
                ModelError("physical-continuous", replay.energy_j, rel * replay.energy_j, run.energy_j)
            )
    if run.batching == "static":
        b_j, b_u, p_j, p_u = padded_estimate_j(profile, run)
        if profile.physical is not None:
            out.insert(1, ModelError("physical-padded", *physical_padded_j(profile, run), run.energy_j))
        out.insert(len(out) - 2, ModelError("binned-padded", b_j, b_u, run.energy_j))
        out.append(ModelError("parametric-padded", p_j, p_u, run.energy_j))
    assert flops is not None
    out.append(ModelError("flops", flops[0], 0.0, run.energy_j))
    out.append(ModelError("flops-50%", flops[1], 0.0, run.energy_j))
    return out

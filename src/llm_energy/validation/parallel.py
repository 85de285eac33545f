"""Data-parallel replicas vs one tensor-parallel group on the same GPUs at the same total load.

Both sides come from measured runs in the store, at the same model, engine, mode, lengths and dtype:

* **replicas** — N/k independent copies of k GPUs each (k = `replica_tp`, 1 by default: one GPU per
  copy), the total batch B split evenly: the measured TP-k run at batch B·k/N, taken N/k times.
  Energy is N/k x that run's energy (each copy burns it on its own GPUs, concurrently); latency is
  that run's (the copies run side by side). This assumes copies do not interact (no shared host
  bottleneck) — stated, not measured. k > 1 is for models that do not fit on one GPU (70B).
* **tp** — the measured run with ``tp_size = N`` at batch B: energy summed over its N GPUs, also
  reported per GPU; latency per phase.

Energy is GPU energy where GPUs were measured, else every measured domain (CPU smoke runs).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from llm_energy.errors import ConfigError
from llm_energy.records import RunResult

Layout = Literal["replicas", "tp"]
PHASE_NAMES: tuple[str, ...] = ("prefill", "decode", "total")


@dataclass(frozen=True)
class LayoutFigures:
    """One layout's figures for one whole load (B requests over N GPUs), per repetition of a phase.

    Attributes:
        layout: ``replicas`` or ``tp``.
        gpus: GPUs used (N).
        copies: Model copies (N for replicas, 1 for TP).
        batch_per_copy: Requests each copy runs at once.
        latency_s: Wall time of each phase (prefill, decode, total) for one batch.
        energy_j: Energy of each phase summed over all N GPUs.
        energy_per_gpu_j: Energy of each phase on each GPU (``gpu:i`` → J), per domain.
        energy_per_output_token_j: `energy_j["total"]` / (B x output tokens).
        run_ids: The stored runs the figures come from.
    """

    layout: Layout
    gpus: int
    copies: int
    batch_per_copy: int
    latency_s: dict[str, float]
    energy_j: dict[str, float]
    energy_per_gpu_j: dict[str, dict[str, float]]
    energy_per_output_token_j: float
    run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ParallelComparison:
    """Replicas vs TP at one total load; ratios are TP / replicas (> 1: TP costs more)."""

    model: str
    gpus: int
    total_batch: int
    input_len: int
    output_len: int
    replicas: LayoutFigures
    tp: LayoutFigures
    replica_tp: int = 1

    @property
    def energy_ratio(self) -> float:
        """TP's whole-generation energy over the replicas'."""
        return self.tp.energy_j["total"] / self.replicas.energy_j["total"]

    @property
    def latency_ratio(self) -> float:
        """TP's whole-generation latency over the replicas'."""
        return self.tp.latency_s["total"] / self.replicas.latency_s["total"]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (both layouts, the ratios)."""
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("replicas", "tp")},
            "replicas": asdict(self.replicas),
            "tp": asdict(self.tp),
            "energy_ratio_tp_over_replicas": self.energy_ratio,
            "latency_ratio_tp_over_replicas": self.latency_ratio,
        }


def _prefix(run: RunResult) -> str:
    for phase in run.phases.values():
        if phase.measurement.domains("gpu:"):
            return "gpu:"
    return ""


def _matching(
    runs: Iterable[RunResult], *, tp_size: int, batch_size: int, want: dict[str, Any]
) -> list[RunResult]:
    out = []
    for run in runs:
        c = run.config
        if run.status != "ok" or int(c.get("tp_size", 1)) != tp_size or c.get("batch_size") != batch_size:
            continue
        if all(c.get(k) == v for k, v in want.items() if v is not None):
            out.append(run)
    return out


def _figures(
    runs: Sequence[RunResult], layout: Layout, gpus: int, copies: int, batch_per_copy: int
) -> LayoutFigures:
    """Mean over `runs` (repeats) of each phase, scaled by `copies` for replicas."""
    latency_s: dict[str, float] = {}
    energy_j: dict[str, float] = {}
    per_gpu: dict[str, dict[str, float]] = {}
    for name in PHASE_NAMES:
        phases = [r.phases[name] for r in runs if name in r.phases]  # type: ignore[index]
        if not phases:
            continue
        prefix = _prefix(runs[0])
        latency_s[name] = statistics.fmean(p.duration_s for p in phases)
        energy_j[name] = copies * statistics.fmean(
            p.measurement.energy_sum_j(prefix) / p.repetitions for p in phases
        )
        domains = phases[0].measurement.domains(prefix)
        per_gpu[name] = {
            d: statistics.fmean(p.measurement.energy_j[d] / p.repetitions for p in phases) for d in domains
        }
    if "total" not in energy_j:
        raise ConfigError(
            f"run {runs[0].run_id} has no whole-generation (total) phase; measure without --no-total"
        )
    output_tokens = copies * batch_per_copy * int(runs[0].config["output_len"])
    return LayoutFigures(
        layout=layout,
        gpus=gpus,
        copies=copies,
        batch_per_copy=batch_per_copy,
        latency_s=latency_s,
        energy_j=energy_j,
        energy_per_gpu_j=per_gpu,
        energy_per_output_token_j=energy_j["total"] / output_tokens,
        run_ids=[r.run_id for r in runs],
    )


def check_layouts(gpus: int, replica_tp: int = 1) -> None:
    """Check that N GPUs hold N/k replicas of TP k and one TP-N group.

    Raises:
        ConfigError: k < 1, or k does not divide N, or k is not below N (names both values).
    """
    if replica_tp < 1 or gpus <= replica_tp or gpus % replica_tp:
        raise ConfigError(
            f"gpus = {gpus} with replica_tp = {replica_tp}: replicas of k GPUs vs one TP group needs "
            "k to divide the GPUs and be smaller"
        )


def compare_replicas_tp(
    runs: Iterable[RunResult],
    *,
    model: str,
    gpus: int,
    total_batch: int,
    input_len: int,
    output_len: int,
    engine: str = "hf",
    mode: str | None = None,
    dtype: str | None = None,
    replica_tp: int = 1,
) -> ParallelComparison:
    """Compare N/k replicas (TP k at batch B·k/N each) with one TP-N group at batch B, from stored runs.

    Args:
        runs: Stored runs (e.g. `Store.read_runs(status="ok")`); repeats of a point are averaged.
        model: Model name as stored.
        gpus: N, the GPUs both layouts use (>= 2).
        total_batch: B, requests in flight over all GPUs; must divide by N.
        input_len: Input tokens per request.
        output_len: Output tokens per request.
        engine: Engine name as stored.
        mode: Engine mode, or None for any.
        dtype: Dtype as stored (the resolved one: float32 on CPU), or None for any.
        replica_tp: k, the TP size of each replica; must divide N and be smaller.

    Raises:
        ConfigError: k does not divide N or is not below it, B does not split evenly over the N/k
            replicas, or a needed run is not in `runs` (the message says which point to measure).
    """
    check_layouts(gpus, replica_tp)
    copies = gpus // replica_tp
    if total_batch < 1 or total_batch % copies:
        raise ConfigError(f"total_batch = {total_batch} does not split evenly over {copies} replicas")
    runs = list(runs)
    want = {
        "model": model,
        "engine": engine,
        "mode": mode,
        "dtype": dtype,
        "input_len": input_len,
        "output_len": output_len,
    }
    per_copy = total_batch // copies
    single = _matching(runs, tp_size=replica_tp, batch_size=per_copy, want=want)
    group = _matching(runs, tp_size=gpus, batch_size=total_batch, want=want)
    shape = f"{model} {engine} {mode or ''} in {input_len} / out {output_len}".replace("  ", " ")
    if not single:
        raise ConfigError(f"no ok run of {shape} at tp_size {replica_tp}, batch {per_copy}: measure it first")
    if not group:
        raise ConfigError(f"no ok run of {shape} at tp_size {gpus}, batch {total_batch}: measure it first")
    return ParallelComparison(
        model=model,
        gpus=gpus,
        total_batch=total_batch,
        input_len=input_len,
        output_len=output_len,
        replicas=_figures(single, "replicas", gpus, copies, per_copy),
        tp=_figures(group, "tp", gpus, 1, total_batch),
        replica_tp=replica_tp,
    )


def comparison_table(
    runs: Iterable[RunResult], *, total_batches: Sequence[int], **shape: Any
) -> list[dict[str, Any]]:
    """Return one JSON-ready row per total batch: both layouts side by side, or what is missing.

    Args:
        runs: Stored runs.
        total_batches: Total loads B to compare at.
        **shape: `compare_replicas_tp`'s keyword arguments other than `total_batch`.

    Raises:
        ConfigError: the GPUs cannot hold both layouts (`check_layouts`); a load that does not split
            or a run not measured is a row with `missing` instead.
    """
    check_layouts(shape["gpus"], shape.get("replica_tp", 1))
    runs = list(runs)
    rows: list[dict[str, Any]] = []
    for total_batch in total_batches:
        try:
            c = compare_replicas_tp(runs, total_batch=total_batch, **shape)
        except ConfigError as exc:
            rows.append({"total_batch": total_batch, "missing": str(exc)})
            continue
        rows.append(
            {
                "total_batch": total_batch,
                "gpus": c.gpus,
                "replica_tp": c.replica_tp,
                "replicas_energy_j": c.replicas.energy_j["total"],
                "tp_energy_j": c.tp.energy_j["total"],
                "replicas_latency_s": c.replicas.latency_s["total"],
                "tp_latency_s": c.tp.latency_s["total"],
                "replicas_j_per_token": c.replicas.energy_per_output_token_j,
                "tp_j_per_token": c.tp.energy_per_output_token_j,
                "energy_ratio_tp_over_replicas": c.energy_ratio,
                "latency_ratio_tp_over_replicas": c.latency_ratio,
                "tp_energy_per_gpu_j": c.tp.energy_per_gpu_j.get("total", {}),
                "detail": c.to_dict(),
            }
        )
    return rows

"""`recommend --scorer simulate --validate-online`: the choice and the runner-up replayed on real servers.

Each of the two configurations is launched as it was simulated (vLLM, its `max_num_seqs`, its chunked-prefill
budget, one replica per instance, one GPU each) and sent the same trace window at the trace's own timestamps
(`replay`'s machinery: warm-up, idle power, consecutive meter windows). The two runs served the same requests,
so they are compared on the energy of the whole replay (every meter window from the first request sent to
the last token) over a **common span**, the longest replay among those that met the SLO: a shorter run's
remaining seconds are costed at its own idle power (`idle_filled_j`). A run that missed the SLO may queue far
longer and would charge the others idle time they never needed, so it keeps its own span (the grid report,
benchmarks/recommend_online_report.py, uses the same rule). The steady-state J/request `replay` reports
(warm-up and drain left out) stands beside it, but it ranks short replays by when requests finish, not by
what they cost: on the H200, 456 requests in 30 s, it ranked the least-energy configuration last
(docs/results/recommend-online-h200.md). The recommendation holds when the choice meets the SLO and the
runner-up either misses it or costs no less on the common span. Without a GPU the replay still runs (latency
only) and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from llm_energy.errors import ConfigError
from llm_energy.recommend.simulated import DEFAULT_ATTAINMENT, SimCandidate, SimRecommendation

ServerFactory = Callable[[SimCandidate], Sequence[Any]]
"""Returns the (not started) servers of one candidate: one per instance."""

SLO_ATTAINMENT_PCT = 100 * DEFAULT_ATTAINMENT
"""Share of requests (%) a measured replay must serve within the SLO to meet it: the simulated ranking's."""


def idle_filled_j(energy_j: float, own_span_s: float, span_s: float, idle_power_w: float | None) -> float:
    """A replay's joules on a span of `span_s`: its own, plus its idle power until the span ends."""
    return energy_j + max(span_s - own_span_s, 0.0) * (idle_power_w or 0.0)


def common_span_s(spans_s: Sequence[float], meets_slo: Sequence[bool]) -> float:
    """The longest span among the replays that met the SLO (all of them if none did); 0 without spans."""
    met = [s for s, ok in zip(spans_s, meets_slo, strict=True) if ok]
    return max(met or spans_s, default=0.0)


@dataclass(frozen=True)
class OnlineCheck:
    """One configuration: simulated vs measured on the same trace window."""

    role: str
    candidate: SimCandidate
    measured_energy_per_request_j: float | None
    measured_ttft_p90_s: float | None
    measured_tpot_p90_s: float | None
    measured_attainment_pct: float | None
    requests_ok: int
    notes: tuple[str, ...]
    replay_energy_j: float | None = None
    replay_span_s: float | None = None
    idle_power_w: float | None = None
    requests_sent: int = 0

    @property
    def meets_slo(self) -> bool:
        """Whether the measured replay served `SLO_ATTAINMENT_PCT` of its requests within the SLO."""
        return self.measured_attainment_pct is not None and self.measured_attainment_pct >= SLO_ATTAINMENT_PCT

    @property
    def energy_ratio(self) -> float | None:
        """Simulated / measured steady-state J per request (None without a GPU)."""
        m = self.measured_energy_per_request_j
        return None if not m else self.candidate.steady_energy_per_request_j / m

    def common_span_j_per_request(self, span_s: float) -> float | None:
        """Whole-replay joules per request sent, its idle power filling the time until `span_s`."""
        if self.replay_energy_j is None or self.replay_span_s is None or not self.requests_sent:
            return None
        return (
            idle_filled_j(self.replay_energy_j, self.replay_span_s, span_s, self.idle_power_w)
            / self.requests_sent
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "energy_ratio": self.energy_ratio, "meets_slo": self.meets_slo}


def replay_energy(
    records: Sequence[Any], intervals: Sequence[tuple[float, float, float]]
) -> tuple[float, float] | None:
    """Joules and seconds of the meter windows overlapping [first request sent, last request done].

    None without records or meter windows. Consecutive windows tile the replay (`replay_servers`), so
    their sum is the energy of serving every request, warm-up and drain included.
    """
    if not records or not intervals:
        return None
    start_s = min(r.sent_s for r in records)
    end_s = max(r.done_s for r in records)
    inside = [(a, b, j) for a, b, j in intervals if b > start_s and a < end_s]
    if not inside:
        return None
    return sum(j for _, _, j in inside), max(b for _, b, _ in inside) - min(a for a, _, _ in inside)


def common_span(checks: Sequence[OnlineCheck]) -> dict[str, float | None]:
    """Each check's J/request on the common span (role → J/request; None without a GPU)."""
    timed = [c for c in checks if c.replay_span_s is not None]
    span_s = common_span_s([c.replay_span_s or 0.0 for c in timed], [c.meets_slo for c in timed])
    return {c.role: c.common_span_j_per_request(span_s) for c in checks}


def verdict(checks: Sequence[OnlineCheck]) -> str | None:
    """Verdict "holds" or "does not hold": the choice vs the runner-up on the common span (None: no pair)."""
    by_role, span = {c.role: c for c in checks}, common_span(checks)
    choice, runner = by_role.get("choice"), by_role.get("runner-up")
    choice_j, runner_j = span.get("choice"), span.get("runner-up")
    if choice is None or runner is None or choice_j is None or runner_j is None:
        return None
    return "holds" if choice.meets_slo and (choice_j <= runner_j or not runner.meets_slo) else "does not hold"


class VllmLaunch(NamedTuple):
    """How a profile's candidates are served: the model, the vLLM mode and the chunked-prefill budget."""

    model: str
    mode: str
    max_num_batched_tokens: int | None


def vllm_servers(launch: Mapping[str, VllmLaunch]) -> ServerFactory:
    """Launch a candidate as vLLM servers on this machine's GPUs (one per instance), as its profile says.

    `launch` maps each candidate's profile name to its model, mode and chunked-prefill budget, so the choice
    and the runner-up are each served in their own mode (eager vs CUDA graphs) with what was simulated
    (vLLM's API server would otherwise take its own default chunk, 8192 on an H100/H200, not the 16384 of the
    offline engine the profiles were calibrated on).

    Raises:
        ConfigError: a candidate whose profile is not in `launch`.
    """
    from llm_energy.serving.servers import launch_servers

    def make(c: SimCandidate) -> Sequence[Any]:
        if c.profile not in launch:
            raise ConfigError(f"no vLLM launch settings for profile {c.profile!r}")
        how = launch[c.profile]
        return launch_servers(
            "vllm", how.model, replicas=c.instances, mode=how.mode, max_num_seqs=c.max_num_seqs,
            max_num_batched_tokens=how.max_num_batched_tokens,
        )  # fmt: skip

    return make


def check_online(
    rec: SimRecommendation,
    trace: str,
    *,
    slo_s: Mapping[str, float],
    servers: ServerFactory,
    gpus: Sequence[Any] = (),
    idle_s: float = 2.0,
    on_status: Callable[[str], None] | None = None,
) -> list[OnlineCheck]:
    """Replay the trace window through the choice's and the runner-up's servers; return both checks."""
    from llm_energy.serving.loadgen import schedule_from_trace
    from llm_energy.serving.replay_run import replay_servers
    from llm_energy.serving.servers import ServerGroup
    from llm_energy.workloads import load_trace

    requests = schedule_from_trace(load_trace(trace), 1.0, rec.window)
    out = []
    for role, cand in (("choice", rec.choice), ("runner-up", rec.runner_up)):
        if cand is None:
            continue
        if on_status is not None:
            on_status(f"replaying the {role}: {cand.label()}")
        with ServerGroup(list(servers(cand))) as started:
            run = replay_servers(
                started, requests, gpus=gpus, slo_s=slo_s, idle_s=idle_s if gpus else 0.0,
                config={"recommend": role, "candidate": asdict(cand), "trace": trace},
            )  # fmt: skip
        s = run.summary
        whole = replay_energy(run.records, run.intervals) if gpus else None
        out.append(
            OnlineCheck(
                role=role,
                candidate=cand,
                measured_energy_per_request_j=None if run.energy is None else run.energy.energy_per_request_j,
                measured_ttft_p90_s=s.ttft.p90_s if s.ttft else None,
                measured_tpot_p90_s=s.tpot.p90_s if s.tpot else None,
                measured_attainment_pct=s.slo_attainment_pct,
                requests_ok=s.ok,
                notes=tuple(run.notes) + (() if gpus else ("no GPU metered here: latency only",)),
                replay_energy_j=None if whole is None else whole[0],
                replay_span_s=None if whole is None else whole[1],
                idle_power_w=run.idle_power_w,
                requests_sent=len(requests),
            )  # fmt: skip
        )
    return out

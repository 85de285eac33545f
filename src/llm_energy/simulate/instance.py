"""One simulated serving instance: a vLLM-like continuous-batching scheduler as a SimPy process.

Each iteration is one forward pass (`costs.PassCosts`): the running sequences' decode step plus, within
the token budget (`prefill_chunk_tokens`, each running decode counting one token, as vLLM's V1
scheduler counts them), prefill chunks of the requests waiting in arrival order. A request is admitted
when a sequence slot is free (`max_num_seqs`) and the KV cache holds its prompt; each decode step
grows every running sequence's cache by one token, and when the cache would overflow the newest
running request is preempted (its cache dropped, re-prefilled later with the tokens it had generated:
vLLM's recompute preemption). A prefill that completes emits the request's first token at the end of
its iteration; each decode step emits one token per running sequence.

Speed: while nothing can change the batch (no prefill pending, no admission possible), the process
takes every decode step up to the next completion in one SimPy timeout (`costs.leap`: steps are linear
in context, so their sum is closed-form). An arrival the instance can admit interrupts such a leap; the
step in progress finishes and the new request's prefill joins the next iteration, as in vLLM. So SimPy
events scale with requests, not tokens.

Energy: each iteration's joules (the model's board energy, idle included) over its duration; idle power
(× TP) between iterations, while starting and while a clock or TP change pauses the instance.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from llm_energy.simulate.costs import MIXED_OVERLAP, InstanceConfig, PassCosts, leap, steps_done_by

__all__ = ["Instance", "RequestTable", "Segments"]


@dataclass
class RequestTable:
    """Every request of a simulation, in columns (index = request id, in arrival order).

    Times are simulation seconds; `first_s` and `done_s` are NaN until they happen.
    """

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    klass: np.ndarray
    first_s: np.ndarray = field(init=False)
    done_s: np.ndarray = field(init=False)
    generated: np.ndarray = field(init=False)
    prefilled: np.ndarray = field(init=False)
    instance: np.ndarray = field(init=False)
    preemptions: np.ndarray = field(init=False)
    failed: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        """Allocate the outcome columns."""
        n = len(self.arrival_s)
        self.first_s = np.full(n, np.nan)
        self.done_s = np.full(n, np.nan)
        self.generated = np.zeros(n, np.int64)
        self.prefilled = np.zeros(n, np.int64)
        self.instance = np.full(n, -1, np.int64)
        self.preemptions = np.zeros(n, np.int64)
        self.failed = np.zeros(n, bool)

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass
class Segments:
    """Energy log: one row per interval an instance spent (iteration, leap, idle, start, pause)."""

    start_s: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    busy: list[bool] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)

    def add(
        self, start_s: float, end_s: float, energy_j: float, tokens: float, busy: bool, gpus: int
    ) -> None:
        """Append one interval (skipped when empty)."""
        if end_s > start_s or energy_j:
            self.start_s.append(start_s)
            self.end_s.append(end_s)
            self.energy_j.append(energy_j)
            self.tokens.append(tokens)
            self.busy.append(busy)
            self.gpus.append(gpus)


class Instance:
    """A serving instance (TP GPUs) running continuous batching as one SimPy process.

    Attributes:
        index: Instance number in the cluster.
        pool: Name of the pool it serves.
        costs: Its current pass costs (configuration).
        state: `starting`, `active`, `draining` or `stopped`.
        arrivals: Requests routed to it so far (for controllers).
    """

    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        pool: str,
        costs: PassCosts,
        table: RequestTable,
        segments: Segments,
        *,
        start_delay_s: float = 0.0,
        on_finish: Callable[[int], None] | None = None,
    ) -> None:
        self.env, self.index, self.pool, self.costs = env, index, pool, costs
        self.table, self.segments, self.on_finish = table, segments, on_finish
        self.state = "starting" if start_delay_s > 0 else "active"
        self.waiting: deque[int] = deque()
        self.prefilling: list[int] = []
        self.running: list[int] = []
        self.kv_used = 0
        self.arrivals = 0
        self.finished: list[int] = []
        self.in_leap = False
        self.pause_s = 0.0
        self.pending: InstanceConfig | None = None
        self.started_s = env.now
        self.stopped_s: float | None = None
        self._wake: simpy.Event | None = None
        self._idle_since: float | None = None
        self.process = env.process(self._run(start_delay_s))

    # -- what the router and the controllers see --------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests routed here and not finished."""
        return len(self.waiting) + len(self.prefilling) + len(self.running)

    @property
    def config(self) -> InstanceConfig:
        """The configuration it runs."""
        return InstanceConfig(self.costs.tp, self.costs.clock_mhz, self.costs.max_num_seqs)

    def submit(self, rid: int) -> None:
        """Queue request `rid`; wake the instance, or cut its leap short if it could admit it now."""
        self.waiting.append(rid)
        self.arrivals += 1
        self.table.instance[rid] = self.index
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self.in_leap and len(self.running) + len(self.prefilling) < self.costs.max_num_seqs:
            self.in_leap = False
            self.process.interrupt()

    def reconfigure(self, costs: PassCosts, pause_s: float) -> None:
        """Run `costs` from the next iteration on, after a pause of `pause_s` (a clock change, a re-shard)."""
        self.costs = costs
        self.pause_s += pause_s
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def drain(self) -> None:
        """Take no new requests; stop once the last one finishes."""
        if self.state in ("active", "starting"):
            self.state = "draining"
            if self._wake is not None and not self._wake.triggered:
                self._wake.succeed()

    # -- the process ---------------------------------------------------------------------------------------

    def _idle(self, seconds: float) -> Generator[simpy.Event, Any, None]:
        start = self.env.now
        yield self.env.timeout(seconds)
        self.segments.add(start, self.env.now, self.costs.idle_power_w * seconds, 0.0, False, self.costs.tp)

    def _run(self, start_delay_s: float) -> Generator[simpy.Event, Any, None]:
        if start_delay_s > 0:
            yield from self._idle(start_delay_s)
            if self.state == "starting":
                self.state = "active"
        while True:
            if self.pause_s > 0:
                pause, self.pause_s = self.pause_s, 0.0
                yield from self._idle(pause)
                continue
            if not self.outstanding:
                if self.state == "draining":
                    self._stop()
                    return
                start = self._idle_since = self.env.now
                self._wake = self.env.event()
                yield self._wake
                self._wake = self._idle_since = None
                idle_j = self.costs.idle_power_w * (self.env.now - start)
                self.segments.add(start, self.env.now, idle_j, 0.0, False, self.costs.tp)
                continue
            chunks = self._schedule_prefill()
            if chunks:
                yield from self._iteration(chunks)
            elif self.running:
                yield from self._leap()
            else:  # waiting requests that can never be admitted here were failed by _schedule_prefill
                continue

    def _stop(self) -> None:
        self.state = "stopped"
        self.stopped_s = self.env.now

    def close(self, end_s: float) -> None:
        """At the end of the simulation: log the idle time still open (waiting for work)."""
        if self._idle_since is not None and self.state != "stopped":
            seconds = end_s - self._idle_since
            self.segments.add(
                self._idle_since, end_s, self.costs.idle_power_w * seconds, 0.0, False, self.costs.tp
            )
            self._idle_since = None

    def _schedule_prefill(self) -> list[tuple[int, int]]:
        """Admit waiting requests and pick this iteration's prefill chunks [(request, tokens)]."""
        t = self.table
        budget = self.model_chunk() - len(self.running)
        chunks: list[tuple[int, int]] = []
        for rid in self.prefilling:
            if budget <= 0:
                break
            n = min(self._prompt(rid) - int(t.prefilled[rid]), budget)
            chunks.append((rid, n))
            budget -= n
        cap = self.costs.kv_capacity_tokens
        while (
            self.waiting and budget > 0 and len(self.running) + len(self.prefilling) < self.costs.max_num_seqs
        ):
            rid = self.waiting[0]
            need = self._prompt(rid)
            if self.kv_used + need > cap:
                if not self.running and not self.prefilling:  # never fits, even alone
                    self.waiting.popleft()
                    self._fail(rid)
                    continue
                break
            self.waiting.popleft()
            self.kv_used += need
            self.prefilling.append(rid)
            n = min(need, budget)
            chunks.append((rid, n))
            budget -= n
        return chunks

    def model_chunk(self) -> int:
        """Token budget of one iteration."""
        return int(self.costs.model.prefill_chunk_tokens)

    def _prompt(self, rid: int) -> int:
        """Tokens to prefill: the prompt, plus what was generated before a preemption (recompute)."""
        t = self.table
        generated = int(t.generated[rid])
        return int(t.input_tokens[rid]) + (generated if generated > 0 else 0)

    def _fail(self, rid: int) -> None:
        self.table.failed[rid] = True
        self.table.done_s[rid] = self.env.now
        if self.on_finish is not None:
            self.on_finish(1)

    def _context(self) -> int:
        t = self.table
        ids = self.running
        return int(t.input_tokens[ids].sum() + t.generated[ids].sum()) if ids else 0

    def _iteration(self, chunks: list[tuple[int, int]]) -> Generator[simpy.Event, Any, None]:
        """One forward pass: prefill `chunks` plus the running batch's decode step."""
        t, costs = self.table, self.costs
        tokens = sum(n for _, n in chunks)
        pairs = sum(n * int(t.prefilled[rid]) + n * (n + 1) / 2 for rid, n in chunks)
        time_s, energy_j = costs.prefill(tokens, pairs)
        batch = len(self.running)
        if batch:
            if self.kv_used + batch > costs.kv_capacity_tokens:
                self._preempt_newest()
                return
            dt, de, _, _ = costs.decode_line(batch, self._context())
            time_s, energy_j = time_s + dt, energy_j + de
            if MIXED_OVERLAP:
                ct, ce = costs.mixed_overlap()
                time_s, energy_j = time_s - ct, energy_j - ce
        start = self.env.now
        yield self.env.timeout(time_s)
        self.segments.add(start, self.env.now, energy_j, batch + 0.0, True, costs.tp)
        if batch:
            self._advance(1)
        for rid, n in chunks:
            t.prefilled[rid] += n
        emitted = 0
        for rid, _ in chunks:
            if t.prefilled[rid] >= self._prompt(rid):
                self.prefilling.remove(rid)
                t.prefilled[rid] = 0
                self.kv_used += 1
                emitted += 1
                if math.isnan(t.first_s[rid]):
                    t.first_s[rid] = self.env.now
                t.generated[rid] += 1
                if t.generated[rid] >= t.output_tokens[rid]:
                    self._finish(rid)
                else:
                    self.running.append(rid)
        if emitted:
            self.segments.tokens[-1] += emitted

    def _advance(self, steps: int) -> None:
        """Account `steps` decode steps of the running batch; finish the requests that are complete."""
        t = self.table
        ids = np.asarray(self.running)
        t.generated[ids] += steps
        self.kv_used += steps * len(ids)
        done = ids[t.generated[ids] >= t.output_tokens[ids]]
        for rid in done.tolist():
            self.running.remove(rid)
            self._finish(rid)

    def _finish(self, rid: int) -> None:
        t = self.table
        t.done_s[rid] = self.env.now
        self.finished.append(rid)
        self.kv_used -= int(t.input_tokens[rid] + t.generated[rid])
        if self.on_finish is not None:
            self.on_finish(1)

    def _preempt_newest(self) -> None:
        """Drop the newest running request's cache; it is re-prefilled (with its tokens) when admitted."""
        rid = self.running.pop()
        t = self.table
        self.kv_used -= int(t.input_tokens[rid] + t.generated[rid])
        t.preemptions[rid] += 1
        t.prefilled[rid] = 0
        self.waiting.appendleft(rid)

    def _leap(self) -> Generator[simpy.Event, Any, None]:
        """Decode steps of a fixed batch up to the next completion, cut short by an admissible arrival."""
        t, costs = self.table, self.costs
        ids = np.asarray(self.running)
        batch = len(ids)
        headroom = (costs.kv_capacity_tokens - self.kv_used) // batch
        if headroom < 1:
            self._preempt_newest()
            return
        steps = int(min((t.output_tokens[ids] - t.generated[ids]).min(), headroom))
        t0, e0, dt, de = costs.decode_line(batch, self._context())
        total_s, total_j = leap(t0, e0, dt, de, batch, steps)
        start = self.env.now
        self.in_leap = True
        try:
            yield self.env.timeout(total_s)
            self.in_leap = False
            done = steps
        except simpy.Interrupt:
            done = steps_done_by(t0, dt, batch, self.env.now - start, steps)
            done = min(done + 1, steps)  # the step in progress finishes
            end_s = start + leap(t0, e0, dt, de, batch, done)[0]
            yield self.env.timeout(max(end_s - self.env.now, 0.0))
            total_j = leap(t0, e0, dt, de, batch, done)[1]
        self.segments.add(start, self.env.now, total_j, float(batch * done), True, costs.tp)
        self._advance(done)

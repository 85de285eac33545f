"""A simulated engine: advances a shared simulated clock and sets simulated GPUs' power per phase.

It implements the real `Engine` protocol, so runner → meter → store → report run end to end on a
CPU in milliseconds, with known ground truth: prefill takes `prefill_s_per_token` per token at
`prefill_power_w`, and each decode step takes `decode_step_s` at `decode_power_w`. Power never
exceeds a GPU's power limit (`SimulatedGpu.power_limit_w`): a lower limit caps the phase powers and
so the energy (the timing stays the same; a real GPU would also slow down).

The clock and the GPUs are injected (`meters.simulated.SimClock` and `SimulatedGpu` fit the
`SimClock` and `PoweredGpu` protocols below): like every engine, this one imports no meter, and the
meter that measures it reads the same devices.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llm_energy.engines.base import Batch, EngineDescriptor
from llm_energy.errors import EngineError, OutOfMemory

SIMULATED_CALIBRATION_SPEC = """\
name: sim-calibration
models: [sim]
engines: [{engine: simulated}]
batch_sizes: [1, 4, 16]
input_lens: [128, 512, 2048]
output_lens: [32, 128]
window_s: 1.0
idle_s: 1.0
"""
"""A small calibration sweep of this engine (18 points, seconds on a CPU): tests' and smoke runs' profile."""


class SimClock(Protocol):
    """The simulated clock the engine advances (a `meters.simulated.SimClock`)."""

    def __call__(self) -> float:
        """Return the simulated time in seconds."""
        ...

    def advance(self, dt_s: float) -> None:
        """Move the clock forward by `dt_s` seconds."""
        ...


class PoweredGpu(Protocol):
    """A simulated GPU whose power the engine sets per phase (a `meters.simulated.SimulatedGpu`)."""

    power_limit_w: float

    def set_power_w(self, power_w: float) -> None:
        """Draw `power_w` watts from now on."""
        ...


class SimulatedEngineConfig(BaseModel):
    """Timing and power of the simulated engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = "default"
    prefill_s_per_token: float = Field(2e-5, gt=0, description="seconds per prefill token")
    decode_step_s: float = Field(0.01, gt=0, description="seconds per decode step (any batch size)")
    prefill_power_w: float = Field(650.0, ge=0)
    decode_power_w: float = Field(400.0, ge=0)
    idle_power_w: float = Field(70.0, ge=0)
    max_batch_size: int = Field(1024, gt=0, description="larger batches raise OutOfMemory")
    wall_s_per_call: float = Field(0.0, ge=0, description="real seconds slept per phase call (kill tests)")
    crash_at_batch_size: int | None = Field(
        None,
        description="the process dies (exit 137) when preparing this batch size: a worker killed mid-point",
    )


class SimulatedEngine:
    """Engine whose 'work' is advancing a simulated clock while drawing scripted power."""

    name: ClassVar[str] = "simulated"
    separate_decode: ClassVar[bool] = True
    Config: ClassVar[type[SimulatedEngineConfig]] = SimulatedEngineConfig
    descriptor: ClassVar[EngineDescriptor] = EngineDescriptor(
        modes=("default",),
        batching="continuous",  # `generate_requests` admits requests as slots free up
        batch_option="max_batch_size",
        simulated=True,
    )

    def __init__(self, config: SimulatedEngineConfig, clock: SimClock, gpus: Sequence[PoweredGpu]) -> None:
        self.config = config
        self.clock = clock
        self.gpus = gpus
        self._batch: Batch | None = None
        self._prefilled = False

    def _set_power(self, power_w: float) -> None:
        for gpu in self.gpus:
            gpu.set_power_w(min(power_w, gpu.power_limit_w))

    def load(self) -> None:
        """Loading takes one simulated second at idle power."""
        self._set_power(self.config.idle_power_w)
        self.clock.advance(1.0)

    def prepare(self, batch: Batch) -> None:
        """Reject batches above `max_batch_size` as out of memory; warm up for 0.5 s."""
        if batch.batch_size == self.config.crash_at_batch_size:
            os._exit(137)  # like a SIGKILL from the OOM killer: no cleanup, no exception
        if batch.batch_size > self.config.max_batch_size:
            raise OutOfMemory(f"simulated: batch {batch.batch_size} > {self.config.max_batch_size}")
        self._batch = batch
        self._set_power(self.config.decode_power_w)
        self.clock.advance(0.5)

    def prefill(self) -> None:
        """Advance the clock by the prefill time at prefill power."""
        batch = self._require()
        self._set_power(self.config.prefill_power_w)
        self.clock.advance(batch.prefill_tokens * self.config.prefill_s_per_token)
        time.sleep(self.config.wall_s_per_call)
        self._prefilled = True

    def decode(self) -> int:
        """Advance the clock by the decode steps at decode power."""
        batch = self._require()
        if not self._prefilled:
            raise EngineError("decode() called before prefill()")
        self._set_power(self.config.decode_power_w)
        self.clock.advance(batch.decode_steps * self.config.decode_step_s)
        time.sleep(self.config.wall_s_per_call)
        return batch.decode_tokens

    def generate(self) -> int:
        """Run prefill then decode; return output tokens of the whole batch."""
        self.prefill()
        batch = self._require()
        return batch.batch_size + (self.decode() if batch.decode_steps > 0 else 0)

    def generate_requests(
        self, input_tokens: Sequence[int], output_tokens: Sequence[int], seed: int = 0
    ) -> int:
        """Continuous batching of mixed-length requests, at most `max_batch_size` at once.

        Requests join in order as slots free up; each step decodes every running request. Prefill of a
        joining request is charged at prefill power, steps at decode power. Returns output tokens.
        """
        del seed
        remaining = list(output_tokens)
        pending = list(range(len(remaining)))
        running: list[int] = []
        while pending or running:
            while pending and len(running) < self.config.max_batch_size:
                i = pending.pop(0)
                self._set_power(self.config.prefill_power_w)
                self.clock.advance(input_tokens[i] * self.config.prefill_s_per_token)
                remaining[i] -= 1  # prefill yields the first token
                running.append(i)
            running = [i for i in running if remaining[i] > 0]
            if running:
                self._set_power(self.config.decode_power_w)
                self.clock.advance(self.config.decode_step_s)
                for i in running:
                    remaining[i] -= 1
        return int(sum(output_tokens))

    def synchronize(self) -> None:
        """Nothing is asynchronous in the simulation."""

    def describe(self) -> dict[str, Any]:
        """Return the simulated engine's settings."""
        return {"engine": self.name, **self.config.model_dump()}

    def close(self) -> None:
        """Drop back to idle power."""
        self._set_power(self.config.idle_power_w)

    def _require(self) -> Batch:
        if self._batch is None:
            raise EngineError("prepare() must be called first")
        return self._batch

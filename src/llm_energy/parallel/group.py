"""A tensor-parallel process group: rank 0 here, ranks 1..N-1 in follower processes it spawns.

Rank 0 is the process that measures (the worker that owns the meter), so the runner and the meter
code run unchanged there. It spawns the followers (`python -m llm_energy.parallel.follower ENTRY`,
ENTRY being the engine's `module:function` that runs one follower rank: the group knows no engine) with the
torchrun environment (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) and joins
them in `torch.distributed` (NCCL on GPUs, gloo on the CPU). From then on rank 0 sends each engine
call as a command and the followers run the same call, so every rank runs the same phases in the
same order.

Commands travel on a gloo group (a small int64 tensor, one broadcast): on GPUs that keeps control
traffic off NCCL, and a gloo barrier waits for every rank's CPU side after it synchronised its GPU.
Load and prepare end with a status exchange so an error (e.g. out of memory) on any rank reaches rank 0
as an exception instead of a hang; the phase calls skip it to keep their overhead to one broadcast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from llm_energy.errors import EngineError, LlmEnergyError, OutOfMemory

logger = logging.getLogger(__name__)

OPS: dict[str, int] = {
    "load": 1,
    "prepare": 2,
    "prefill": 3,
    "decode": 4,
    "generate": 5,
    "sync": 6,
    "outputs": 7,
    "close": 8,
}
"""Command codes rank 0 broadcasts; the followers run the engine call of the same name."""

OP_NAMES: dict[int, str] = {code: name for name, code in OPS.items()}

COMMAND_WIDTH = 5
"""Int64 slots of one command: the op code and up to four arguments (a batch's shape and seed)."""

STATUS_OPS: frozenset[str] = frozenset({"load", "prepare", "close"})
"""Commands after which every rank reports success or its error to rank 0."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (for the rendezvous store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def backend_for(device: str) -> str:
    """Return the torch.distributed backend for `device`: nccl on CUDA, gloo on the CPU."""
    return "nccl" if device.startswith("cuda") else "gloo"


def package_root() -> str:
    """Return the directory `llm_energy` was imported from (src/ in a checkout)."""
    return str(Path(__file__).resolve().parents[2])


def cpu_threads_per_rank(world_size: int) -> int:
    """Return the CPU threads each rank of a CPU group uses: its share of the cores, at least 1."""
    return max(1, (os.cpu_count() or 1) // world_size)


def rank_device(device: str, rank: int) -> str:
    """Return the torch device of `rank` when rank 0 runs on `device` (``cuda:N`` → ``cuda:N+rank``)."""
    if device == "cpu":
        return "cpu"
    first = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    return f"cuda:{first + rank}"


def init_process_group(rank: int, world_size: int, device: str, *, port: int, timeout_s: float) -> Any:
    """Join the group as `rank` and return the gloo group commands travel on.

    Every rank calls this with the same arguments but its rank (collective: `new_group` too).
    """
    import torch
    import torch.distributed as dist

    backend = backend_for(device)
    device_id = None
    if backend == "nccl":
        device_id = torch.device(rank_device(device, rank))
        torch.cuda.set_device(device_id)
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
        device_id=device_id,
    )
    return dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD


@contextlib.contextmanager
def local_rank_env(device: str, rank: int) -> Iterator[None]:
    """Set `LOCAL_RANK` (and `RANK`) while transformers sets up the TP mesh, then restore them.

    transformers' `initialize_tensor_parallelism` reads `LOCAL_RANK` from the environment to pick
    this rank's device; followers get it at spawn, rank 0 (the measuring process) only meanwhile.
    """
    index = rank_device(device, rank)
    values = {"LOCAL_RANK": index.split(":")[1] if ":" in index else str(rank), "RANK": str(rank)}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def encode_command(op: str, args: Sequence[int] = ()) -> list[int]:
    """Return the fixed-width int list for `op` with `args` (unused slots are 0)."""
    if len(args) > COMMAND_WIDTH - 1:
        raise ValueError(f"a command carries at most {COMMAND_WIDTH - 1} arguments")
    return [OPS[op], *args, *([0] * (COMMAND_WIDTH - 1 - len(args)))]


def decode_command(values: Sequence[int]) -> tuple[str, list[int]]:
    """Return (op name, arguments) of a received command."""
    return OP_NAMES[int(values[0])], [int(v) for v in values[1:]]


def raise_first_error(statuses: Sequence[tuple[str, str] | None]) -> None:
    """Raise the first rank's error from gathered statuses (None = ok; ``(kind, message)`` = failed).

    Raises:
        OutOfMemory: a rank ran out of memory (any rank: the group cannot run the point).
        EngineError: a rank failed otherwise.
    """
    failed = [(rank, s) for rank, s in enumerate(statuses) if s is not None]
    if not failed:
        return
    oom = [(rank, s) for rank, s in failed if s[0] == "oom"]
    rank, (kind, message) = (oom or failed)[0]
    text = f"rank {rank}: {message}"
    raise OutOfMemory(text) if kind == "oom" else EngineError(text)


def status_of(exc: BaseException | None) -> tuple[str, str] | None:
    """Return the status a rank reports for `exc` (None when the call succeeded)."""
    if exc is None:
        return None
    return ("oom" if isinstance(exc, OutOfMemory) else "error", f"{type(exc).__name__}: {exc}")


class TPGroup:
    """Rank 0's side of the group: spawns the followers, sends commands, closes everything.

    Args:
        world_size: Ranks in the group (the TP size).
        device: Rank 0's device (``cpu``, ``cuda`` or ``cuda:N``); rank r uses `rank_device`.
        follower_spec: JSON-ready description of the engine every follower builds.
        follower: `module:function` each follower process runs with the spec's JSON as its only
            argument (see `llm_energy.parallel.follower`); it returns the process's exit code.
        timeout_s: Collective timeout: a rank stuck longer (e.g. a dead peer) fails with an error.
        python: Interpreter for the followers (this one by default).
    """

    def __init__(
        self,
        world_size: int,
        device: str,
        follower_spec: dict[str, Any],
        *,
        follower: str,
        timeout_s: float = 1800.0,
        python: str = sys.executable,
    ) -> None:
        self.world_size = world_size
        self.device = device
        self.follower_spec = follower_spec
        self.follower = follower
        self.timeout_s = timeout_s
        self.python = python
        self.procs: list[subprocess.Popen[bytes]] = []
        self.control: Any = None

    @property
    def started(self) -> bool:
        """True once the followers run and the process group is up."""
        return self.control is not None

    def start(self) -> None:
        """Spawn ranks 1..N-1 and join them in the process group (returns when all have joined)."""
        import torch.distributed as dist

        if self.started:
            return
        if dist.is_initialized():
            # torch.distributed has one default group per process: a second group here would have to
            # replace the first one's (and hang its followers).
            raise EngineError(
                "a torch.distributed process group is already running in this process: "
                "one tensor-parallel group at a time (close the other engine first)"
            )
        port = free_port()
        spec = json.dumps({**self.follower_spec, "device": self.device, "timeout_s": self.timeout_s})
        for rank in range(1, self.world_size):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(self.world_size),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "LOCAL_RANK": rank_device(self.device, rank).split(":")[-1]
                if self.device != "cpu"
                else str(rank),
            }
            # The followers import this very package, wherever it was imported from here.
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH", "")) if p)
            if self.device == "cpu":
                # Ranks share the CPU: each takes its part of the cores, or OpenMP threads spinning
                # in every rank make each collective wait for a time slice (x30 slower on 2 cores).
                env.setdefault("OMP_NUM_THREADS", str(cpu_threads_per_rank(self.world_size)))
            cmd = [self.python, "-m", "llm_energy.parallel.follower", self.follower, spec]
            self.procs.append(subprocess.Popen(cmd, env=env))  # noqa: S603 - our own module, no shell
        try:
            self.control = init_process_group(
                0, self.world_size, self.device, port=port, timeout_s=self.timeout_s
            )
        except Exception:
            self._kill()
            raise

    def send(self, op: str, args: Sequence[int] = ()) -> None:
        """Broadcast command `op` to the followers (they run it on receipt)."""
        import torch
        import torch.distributed as dist

        self._check_alive()
        dist.broadcast(torch.tensor(encode_command(op, args), dtype=torch.int64), src=0, group=self.control)

    def gather_statuses(self, mine: tuple[str, str] | None) -> list[tuple[str, str] | None]:
        """Collect every rank's status after a `STATUS_OPS` command (rank 0's own first)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, mine, group=self.control)
        return out

    def gather(self, mine: Any) -> list[Any]:
        """Collect one picklable object from every rank (rank 0's first)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, mine, group=self.control)
        return out

    def barrier(self) -> None:
        """Wait until every rank reached its barrier (after synchronising its device)."""
        import torch.distributed as dist

        dist.barrier(group=self.control)

    def run(self, op: str, local: Callable[[], Any], args: Sequence[int] = ()) -> Any:
        """Send `op`, run `local` here, and (for `STATUS_OPS`) raise any rank's error.

        Raises:
            OutOfMemory: a rank ran out of memory during a status op.
            EngineError: a rank failed during a status op.
        """
        self.send(op, args)
        if op not in STATUS_OPS:
            return local()
        result: Any = None
        error: Exception | None = None
        try:
            result = local()
        except Exception as exc:  # noqa: BLE001 - every rank must reach the status exchange first
            error = exc
        statuses = self.gather_statuses(status_of(error))
        if isinstance(error, LlmEnergyError):
            raise error
        if error is not None:
            raise EngineError(f"rank 0: {type(error).__name__}: {error}") from error
        raise_first_error(statuses)
        return result

    def close(self) -> None:
        """Tell the followers to stop, wait for them, and leave the process group."""
        import torch.distributed as dist

        try:
            if self.started and all(p.poll() is None for p in self.procs):
                self.run("close", lambda: None)
        finally:
            for proc in self.procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    logger.warning("follower %d did not stop; killing it", proc.pid)
                    proc.kill()
                    proc.wait()
            self.procs = []
            if self.control is not None and dist.is_initialized():  # only the group this one started
                dist.destroy_process_group()
            self.control = None

    def _check_alive(self) -> None:
        dead = [p for p in self.procs if p.poll() is not None]
        if dead:
            codes = ", ".join(f"pid {p.pid} exit {p.returncode}" for p in dead)
            raise EngineError(f"a tensor-parallel follower died ({codes})")

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs = []

"""The `hf` engine over N devices with transformers' tensor parallelism (`tp_plan="auto"`).

Each rank holds a `HFTPRankEngine`: the `hf` engine's own prefill/decode loop (eager) over a model
that transformers loads sharded by the model's TP plan (`DistributedConfig(tp_size=N)`; for Llama:
q/k/v and gate/up split by output features, o/down by input features with an all-reduce after,
lm_head split by vocabulary and gathered). Every rank computes the same tokens.

Rank 0 is the measuring process: `TPEngine` wraps its rank engine and a `TPGroup`, and sends every
engine call to the followers before running it itself, so the ranks stay in lockstep.
`synchronize()` synchronises every rank's device and then meets the others at a barrier, so a meter
window (whose edges call it) opens and closes when all ranks are idle. Rank 0 measures all the
group's GPUs; results come only from it.

Weights. With a local checkpoint, transformers loads each rank's shard from it. Random weights are
built one of two ways (`weights`):

* ``full`` — each rank builds the whole seeded model exactly as the one-device engine does and hands
  its state dict to the TP loader, which keeps this rank's shard: weights (and so tokens) are identical
  to TP 1. Each rank briefly holds the whole model, so this is for models that fit on one device.
* ``shard`` — transformers initialises only this rank's shard (``state_dict={}``: every weight is
  "missing" and gets the model's own init), then the replicated weights (embeddings, norms) are
  broadcast from rank 0 so every rank holds the same. Same distribution as TP 1, other values.

`auto` picks ``full`` when the whole model's weights take at most `FULL_WEIGHTS_MAX_BYTES`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from llm_energy.architectures import Architecture, build_model, weight_bytes
from llm_energy.engines.base import Batch, EngineDescriptor, oom_as_error
from llm_energy.engines.hf import HFEngine, HFEngineConfig
from llm_energy.errors import ConfigError
from llm_energy.parallel.checks import check_visible_gpus
from llm_energy.parallel.group import TPGroup, cpu_threads_per_rank, local_rank_env, rank_device

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

TPWeights = Literal["auto", "full", "shard"]

FOLLOWER = "llm_energy.engines.hf_tp:follower_main"
"""The entry point each follower process runs (`TPGroup` spawns it by name)."""

FULL_WEIGHTS_MAX_BYTES = 4 * 2**30
"""`auto` builds the whole model on each rank (identical to TP 1) up to this many bytes of weights."""


def resolve_weights(arch: Architecture, dtype: str, weights: TPWeights) -> Literal["full", "shard"]:
    """Return ``full`` or ``shard`` for `weights` (see the module docstring)."""
    if weights != "auto":
        return weights
    bytes_per_param = 4.0 if dtype == "float32" else 2.0
    return "full" if weight_bytes(arch, bytes_per_param) <= FULL_WEIGHTS_MAX_BYTES else "shard"


def _causal_lm_class(config: Any) -> Any:
    # The concrete class: the auto class's from_pretrained insists on a path to resolve remote code.
    from transformers import AutoModelForCausalLM

    auto: Any = AutoModelForCausalLM
    return auto._model_mapping[type(config)]


def build_tp_model(
    arch: Architecture,
    *,
    tp_size: int,
    rank: int,
    device: str,
    dtype: str,
    init: Literal["normal", "uniform", "zeros"] = "normal",
    seed: int = 0,
    weights: Literal["full", "shard"] = "full",
) -> torch.nn.Module:
    """Return this rank's TP shard of `arch` (collective: every rank of the group calls it together).

    The process group must be up with `tp_size` ranks. `device` is this rank's device.

    Raises:
        ConfigError: the checkpoint cannot be loaded or transformers rejects the config.
    """
    from transformers.distributed.configuration_utils import DistributedConfig

    from llm_energy.architectures.build import clear_stop_tokens, hf_config, torch_dtype

    dist_config = DistributedConfig(tp_size=tp_size)
    weight_dtype = torch_dtype(dtype)
    with local_rank_env(device, rank):
        if arch.path is not None:
            config = hf_config(arch)
            try:
                model = _causal_lm_class(config).from_pretrained(
                    arch.path, dtype=weight_dtype, local_files_only=True, distributed_config=dist_config
                )
            except OSError as exc:
                raise ConfigError(f"cannot load the checkpoint in {arch.path}: {exc}") from exc
        elif weights == "full":
            full = build_model(arch, device=device, dtype=dtype, init=init, seed=seed)
            state = dict(full.state_dict())
            config = full.config
            model = _causal_lm_class(config).from_pretrained(
                None, config=config, state_dict=state, dtype=weight_dtype, distributed_config=dist_config
            )
            del full, state
        else:
            model = _load_shards(arch, dist_config, weight_dtype, init, seed, device)
    clear_stop_tokens(model)
    model.eval()
    module: torch.nn.Module = model
    return module


def _load_shards(arch: Architecture, dist_config: Any, dtype: Any, init: str, seed: int, device: str) -> Any:
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from llm_energy.architectures.build import hf_config

    config = hf_config(arch)
    with torch.random.fork_rng(devices=[torch.device(device)] if device.startswith("cuda") else []):
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            # DTensor's random init warns that its RNG tracking is partial on a CPU mesh; the shards
            # still get the model's init distribution, which is all random weights promise.
            warnings.filterwarnings("ignore", message="DTensor random operators", category=UserWarning)
            model = _causal_lm_class(config).from_pretrained(
                None, config=config, state_dict={}, dtype=dtype, distributed_config=dist_config
            )
    with torch.no_grad():
        rank = dist.get_rank()
        gen = torch.Generator(device=device).manual_seed(seed + rank)
        for param in model.parameters():
            local = param.to_local() if isinstance(param, DTensor) else param
            if init == "zeros":
                local.zero_()
            elif init == "uniform" and local.is_floating_point():
                from llm_energy.architectures.build import UNIFORM_INIT_BOUND

                local.uniform_(-UNIFORM_INIT_BOUND, UNIFORM_INIT_BOUND, generator=gen)
            if not isinstance(param, DTensor):
                dist.broadcast(local, src=0)  # replicated: every rank must hold rank 0's values
    return model


class HFTPRankEngine(HFEngine):
    """One rank's `hf` engine over its shard of the model (eager mode)."""

    def __init__(
        self, config: HFEngineConfig, arch: Architecture, *, tp_size: int, rank: int, weights: TPWeights
    ) -> None:
        super().__init__(config, arch)
        self.tp_size = tp_size
        self.rank = rank
        self.weights = resolve_weights(arch, config.dtype, weights)

    def load(self) -> None:
        """Load this rank's shard (collective: all ranks load together)."""
        c = self.config
        with oom_as_error():
            self.model = build_tp_model(
                self.arch,
                tp_size=self.tp_size,
                rank=self.rank,
                device=c.device,
                dtype=c.dtype,
                init=c.init,
                seed=c.seed,
                weights=self.weights,
            )

    def describe(self) -> dict[str, Any]:
        """Return the one-device facts plus the TP size and how the weights were made."""
        return {**super().describe(), "tp_size": self.tp_size, "tp_weights": self.weights}


class TPEngine:
    """Rank 0 of a tensor-parallel `hf` group: the `Engine` the runner measures.

    Args:
        config: The `hf` engine config; `device` is rank 0's (rank r runs on the next devices).
        arch: The model shape (or local checkpoint).
        tp_size: Ranks (devices) in the group, >= 2.
        weights: How random weights are made (module docstring).
        timeout_s: Collective timeout of the group.
        visible_gpus: GPUs visible here (default: `torch.cuda.device_count()`), for the check.

    Raises:
        ConfigError: the mode, the shape or the visible GPUs refuse `tp_size` (before any loading).
    """

    name: ClassVar[str] = "hf"
    separate_decode: ClassVar[bool] = True
    descriptor: ClassVar[EngineDescriptor] = HFEngine.descriptor

    def __init__(
        self,
        config: HFEngineConfig,
        arch: Architecture,
        *,
        tp_size: int,
        weights: TPWeights = "auto",
        timeout_s: float = 1800.0,
        visible_gpus: int | None = None,
    ) -> None:
        from llm_energy.engines import check_tp

        check_tp("hf", config.mode, tp_size, arch)
        if config.device != "cpu":
            if visible_gpus is None:
                import torch

                visible_gpus = torch.cuda.device_count()
            check_visible_gpus(tp_size, config.device, visible_gpus)
        self.config = config
        self.arch = arch
        self.tp_size = tp_size
        self.local = HFTPRankEngine(config, arch, tp_size=tp_size, rank=0, weights=weights)
        spec = {
            "arch": arch.path or arch.name,
            "config": config.model_dump(),
            "tp_size": tp_size,
            "weights": self.local.weights,
        }
        self.group = TPGroup(tp_size, config.device, spec, follower=FOLLOWER, timeout_s=timeout_s)
        self._threads: int | None = None

    @property
    def output_ids(self) -> Any:
        """Rank 0's tokens of the last decode (every rank computes the same)."""
        return self.local.output_ids

    @property
    def decode_tokens_computed(self) -> int:
        """Tokens one decode computes (see `HFEngine.decode_tokens_computed`)."""
        return self.local.decode_tokens_computed

    def load(self) -> None:
        """Spawn the followers, then load every rank's shard together.

        On the CPU, this process's torch threads are set to its share of the cores (restored by
        `close`), as the followers' are: ranks oversubscribing the cores slow every collective.
        """
        if self.config.device == "cpu" and self._threads is None:
            import torch

            self._threads = torch.get_num_threads()
            torch.set_num_threads(cpu_threads_per_rank(self.tp_size))
        self.group.start()
        self.group.run("load", self.local.load)

    def prepare(self, batch: Batch) -> None:
        """Prepare and warm up `batch` on every rank."""
        args = (batch.batch_size, batch.input_tokens, batch.output_tokens, batch.seed)
        self.group.run("prepare", lambda: self.local.prepare(batch), args)

    def prefill(self) -> None:
        """Run prefill on every rank."""
        self.group.run("prefill", self.local.prefill)

    def decode(self) -> int:
        """Run decode on every rank; return the tokens returned (rank 0's count)."""
        tokens: int = self.group.run("decode", self.local.decode)
        return tokens

    def generate(self) -> int:
        """Run a whole generation on every rank; return its output tokens."""
        tokens: int = self.group.run("generate", self.local.generate)
        return tokens

    def synchronize(self) -> None:
        """Wait until every rank's device is idle (each synchronises, then all meet at a barrier)."""
        if not self.group.started:  # idle power is measured before the followers exist
            self.local.synchronize()
            return
        self.group.run("sync", self.local.synchronize)
        self.group.barrier()

    def rank_outputs(self) -> list[list[list[int]]]:
        """Return every rank's tokens of the last decode, ``[rank][request][position]`` (for checks)."""
        self.group.send("outputs")
        return self.group.gather(token_lists(self.local.output_ids))

    def describe(self) -> dict[str, Any]:
        """Return rank 0's engine facts (with `tp_size`) and every rank's device."""
        facts = self.local.describe()
        facts["tp_devices"] = [rank_device(self.config.device, r) for r in range(self.tp_size)]
        return facts

    def close(self) -> None:
        """Stop the followers, leave the group and free rank 0's memory."""
        try:
            self.local.close()
        finally:
            self.group.close()  # the followers close their engines on the `close` command
            if self._threads is not None:
                import torch

                torch.set_num_threads(self._threads)
                self._threads = None


def token_lists(output_ids: Any) -> list[list[int]]:
    """Return decoded tokens as ``[request][position]`` ints (empty before any decode)."""
    if output_ids is None:
        return []
    import torch

    return [[int(t) for t in row] for row in torch.stack(list(output_ids), dim=1).cpu()]


def build_tp_engine(arch: Architecture, tp_size: int, **config: Any) -> TPEngine:
    """Build rank 0 of a TP group for `arch` from `hf` config fields (None values dropped).

    Raises:
        ConfigError: an invalid config value, or a TP size the mode, shape or GPUs refuse.
    """
    from pydantic import ValidationError

    try:
        cfg = HFEngineConfig(**{k: v for k, v in config.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"engine 'hf': invalid {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    return TPEngine(cfg, arch, tp_size=tp_size)


def _batch_of(args: list[int]) -> Batch:
    return Batch(args[0], args[1], args[2], args[3])


def follow(engine: HFTPRankEngine, group: Any) -> None:
    """A follower's loop: receive each command from rank 0 and run the same call, until `close`.

    Errors of load / prepare / close are reported to rank 0 at the status exchange; an error in a
    phase call is kept and reported at the next one (rank 0 then fails with it).
    """
    import torch
    import torch.distributed as dist

    from llm_energy.parallel.group import COMMAND_WIDTH, STATUS_OPS, decode_command, status_of

    pending: BaseException | None = None
    while True:
        buf = torch.zeros(COMMAND_WIDTH, dtype=torch.int64)
        dist.broadcast(buf, src=0, group=group)
        op, args = decode_command(buf.tolist())
        error: BaseException | None = None
        try:
            if op == "load":
                engine.load()
            elif op == "prepare":
                engine.prepare(_batch_of(args))
            elif op == "prefill":
                engine.prefill()
            elif op == "decode":
                engine.decode()
            elif op == "generate":
                engine.generate()
            elif op == "sync":
                engine.synchronize()
                dist.barrier(group=group)
            elif op == "outputs":
                out: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(out, token_lists(engine.output_ids), group=group)
            elif op == "close":
                engine.close()
        except Exception as exc:  # noqa: BLE001 - reported to rank 0, which raises it
            logger.warning("rank %d: %s failed: %s", engine.rank, op, exc)
            error = exc
        if op in STATUS_OPS:
            out = [None] * dist.get_world_size()
            dist.all_gather_object(out, status_of(error or pending), group=group)
            pending = None
        elif error is not None:
            pending = error
        if op == "close":
            return


def follower_main(argv: list[str] | None = None) -> int:
    """Entry point of a follower process: join the group, build the rank engine, follow rank 0."""
    import json
    import os

    import torch.distributed as dist

    from llm_energy.architectures import load_architecture
    from llm_energy.parallel.group import init_process_group

    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = spec["device"]
    group = init_process_group(
        rank, world, device, port=int(os.environ["MASTER_PORT"]), timeout_s=float(spec["timeout_s"])
    )
    try:
        config = HFEngineConfig(**{**spec["config"], "device": rank_device(device, rank)})
        engine = HFTPRankEngine(
            config,
            load_architecture(spec["arch"]),
            tp_size=spec["tp_size"],
            rank=rank,
            weights=spec["weights"],
        )
        follow(engine, group)
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    return 0


__all__ = [
    "FULL_WEIGHTS_MAX_BYTES",
    "HFTPRankEngine",
    "TPEngine",
    "build_tp_engine",
    "build_tp_model",
    "follower_main",
    "resolve_weights",
]

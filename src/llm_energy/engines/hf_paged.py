"""Transformers continuous batching over a paged KV cache: the closest in-process analogue of vLLM.

transformers' `ContinuousBatchingManager` runs a scheduler loop in a background thread: requests
go into a queue, each step packs prefill chunks and decode tokens of all active requests into one
forward pass, and keys/values live in a `PagedAttentionCache` of fixed-size blocks. We start one
manager per prepared batch and keep it running, so the paged cache (and any CUDA graphs) is
allocated once in `prepare` and reused by every `prefill` and `generate` call; blocks are freed
as requests finish.

Each call submits the B prompts with `add_requests(max_new_tokens=...)` and waits for the B
results. The scheduler cannot stop after prefill and resume later, so `separate_decode` is False:
`prefill()` is a generation of one token, `generate()` one of `output_tokens`, and the runner
derives decode as their difference. Prefix sharing is switched off, otherwise the second call
with the same prompts would find their blocks cached and skip the prefill we mean to measure.

Attention: ``paged|sdpa`` (default) and ``paged|eager`` run on CPU and CUDA; they pack all requests
of a step into one sequence and mask it block-diagonally, so attention work grows with the whole
batch's tokens, not each request's. ``paged|flash_attention_2``/``_3`` use varlen kernels without
that mask but need the ``flash-attn`` (or ``kernels``) package on a CUDA device.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from llm_energy.architectures import Architecture, build_model
from llm_energy.engines.base import (
    Batch,
    EngineDescriptor,
    PreparedBatchMixin,
    oom_as_error,
    transformers_facts,
)
from llm_energy.engines.transformers_config import TransformersConfig
from llm_energy.errors import EngineError, OutOfMemory

logger = logging.getLogger(__name__)

PagedAttention = Literal["paged|sdpa", "paged|eager", "paged|flash_attention_2", "paged|flash_attention_3"]

DEFAULT_MAX_BATCH_TOKENS = 8192
"""Token budget of one scheduler step when the config leaves it open: transformers' own default and
vLLM's default ``max_num_batched_tokens``. Larger prefills are split into chunks of this size."""

RESULT_POLL_S = 0.5
"""How long one wait for a result lasts before the engine checks that the scheduler thread lives."""

_FLASH_MODULES: dict[str, tuple[str, ...]] = {
    "paged|flash_attention_2": ("flash_attn", "kernels"),
    "paged|flash_attention_3": ("flash_attn_interface", "kernels"),
}
"""Python packages that provide each flash kernel: the flash-attn builds or the hub `kernels` loader."""

STOP_TIMEOUT_S = 30.0
"""How long `close` waits for the scheduler thread to finish."""


class HFPagedEngineConfig(TransformersConfig):
    """Configuration of the continuous-batching engine."""

    mode: Literal["paged"] = Field("paged", description="paged (continuous batching, paged KV cache)")
    dtype: str = Field("bfloat16", description="weights, activations and KV cache dtype")
    attn_implementation: PagedAttention = Field(
        "paged|sdpa", description="paged attention kernel; flash variants need flash-attn on CUDA"
    )
    block_size: int = Field(256, ge=4, description="tokens per KV cache block")
    num_blocks: int | None = Field(
        None, ge=1, description="KV cache blocks; None: just enough for every request of the batch at once"
    )
    max_batch_tokens: int | None = Field(
        None, ge=1, description="tokens per scheduler step; None: min(batch prefill tokens, 8192)"
    )


def paged_cache_size(batch: Batch, config: HFPagedEngineConfig) -> tuple[int, int]:
    """Return `(num_blocks, max_batch_tokens)` for `batch`, keeping the config's values where set.

    The default cache holds every request's full sequence at once, so all B requests are admitted
    together like in vLLM with ample KV memory. transformers may give a request one block more
    than its tokens fill (it allocates ahead), hence the extra block per request. The step budget
    covers the whole prefill when it fits in `DEFAULT_MAX_BATCH_TOKENS` and at least one decode
    token per request.

    Args:
        batch: The batch the cache is for.
        config: The engine configuration.

    Returns:
        Number of KV cache blocks and the token budget of one scheduler step.
    """
    blocks_per_request = math.ceil((batch.input_tokens + batch.output_tokens) / config.block_size) + 1
    num_blocks = config.num_blocks or batch.batch_size * blocks_per_request
    max_batch_tokens = config.max_batch_tokens or max(
        batch.batch_size, min(batch.prefill_tokens, DEFAULT_MAX_BATCH_TOKENS)
    )
    return num_blocks, max_batch_tokens


class HFPagedEngine(PreparedBatchMixin):
    """Transformers continuous batching with a paged KV cache (see module docstring).

    Attributes:
        prompt_ids: The B prompts of exactly `input_tokens` ids each, drawn like `HFEngine` draws them.
        output_ids: Generated ids of each request from the last call, in prompt order.
    """

    name: ClassVar[str] = "hf-paged"
    separate_decode: ClassVar[bool] = False
    Config: ClassVar[type[HFPagedEngineConfig]] = HFPagedEngineConfig
    descriptor: ClassVar[EngineDescriptor] = EngineDescriptor(
        modes=("paged",),
        extra="hf",
        requires=("torch", "transformers"),
        packages=("torch", "transformers"),
        batching="continuous",
    )

    def __init__(self, config: HFPagedEngineConfig, arch: Architecture) -> None:
        self.config = config
        self.arch = arch
        self.model: Any = None
        self._manager: Any = None
        self._batch: Batch | None = None
        self._cache_size: tuple[int, int] | None = None
        self.prompt_ids: list[list[int]] | None = None
        self.output_ids: list[list[int]] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def load(self) -> None:
        """Build the model with random weights (or load the local checkpoint) and select paged attention.

        Raises:
            OutOfMemory: The weights do not fit on the device.
            EngineError: transformers cannot use the chosen attention implementation here.
        """
        flash_modules = _FLASH_MODULES.get(self.config.attn_implementation, ())
        if flash_modules and not any(importlib.util.find_spec(m) for m in flash_modules):
            # Without them transformers 5.17 accepts the name on CUDA and fails in the first forward.
            raise EngineError(
                f"attention {self.config.attn_implementation!r} needs one of the packages "
                f"{', '.join(flash_modules)} (none is installed); use 'paged|sdpa'"
            )
        model: Any
        with oom_as_error():
            model = build_model(
                self.arch,
                device=self.config.device,
                dtype=self.config.dtype,
                init=self.config.init,
                seed=self.config.seed,
            )
        try:
            model.set_attn_implementation(self.config.attn_implementation)
        except (ImportError, ValueError) as exc:
            raise EngineError(
                f"attention {self.config.attn_implementation!r} is unavailable: {str(exc).splitlines()[0]}"
            ) from exc
        self.model = model

    def prepare(self, batch: Batch) -> None:
        """Draw the prompts, allocate the paged cache for `batch`, start the scheduler and warm up.

        Raises:
            OutOfMemory: The cache does not fit in device memory.
            EngineError: The scheduler failed, or CPU memory cannot be read (psutil missing).
        """
        import torch
        import transformers
        from transformers.generation.continuous_batching.utils import WorkloadHints

        if self.model is None:
            self.load()
        if not self.config.device.startswith("cuda") and importlib.util.find_spec("psutil") is None:
            # On a non-CUDA device transformers reads free memory through psutil; without it, it sees
            # 0 bytes and refuses any cache ("Memory footprint N is more than available memory 0").
            raise EngineError(
                "continuous batching on the CPU needs psutil: transformers sizes the paged cache from "
                "psutil's memory figures and sees 0 bytes free without it (pip install psutil)"
            )
        self._stop_manager()
        self._batch = batch
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
        ids = torch.randint(0, self.arch.vocab_size, (batch.batch_size, batch.input_tokens), generator=gen)
        self.prompt_ids = ids.tolist()
        num_blocks, max_batch_tokens = paged_cache_size(batch, self.config)
        self._cache_size = (num_blocks, max_batch_tokens)
        cb_config = transformers.ContinuousBatchingConfig(
            block_size=self.config.block_size,
            num_blocks=num_blocks,
            max_batch_tokens=max_batch_tokens,
            max_requests_per_batch=batch.batch_size,
            allow_block_sharing=False,
            # FIFO's default margin keeps 15% of blocks free by holding back new prefills; our cache
            # is sized for the batch, so a margin would only serialise its last requests.
            safety_margin=0.0,
            scheduler_type="fifo",
        )
        # eos -1 is continuous batching's "no stop token": every request runs to max_new_tokens.
        # GenerationConfig is untyped: call it through Any so mypy --strict accepts the call.
        generation_config_cls: Any = transformers.GenerationConfig
        generation_config = generation_config_cls(
            do_sample=False, max_new_tokens=batch.output_tokens, eos_token_id=-1, pad_token_id=None
        )
        hints = WorkloadHints(
            max_prompt_length=batch.input_tokens,
            max_generated_length=batch.output_tokens,
            num_requests=batch.batch_size,
        )
        with oom_as_error():
            self._manager = self.model.init_continuous_batching(
                generation_config=generation_config,
                continuous_batching_config=cb_config,
                workload_hints=hints,
            )
            # Allocates the paged cache and the step buffers here, in the caller's thread, where an
            # out-of-memory surfaces as an exception rather than as failed requests.
            self._manager.warmup()
        self._manager.start()
        self.generate()
        self.synchronize()

    def close(self) -> None:
        """Stop the scheduler thread, drop the model and free device memory."""
        self._stop_manager()
        self.model = None
        self.prompt_ids = self.output_ids = None
        if self.config.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _stop_manager(self) -> None:
        manager, self._manager = self._manager, None
        if manager is None:
            return
        try:
            if manager.is_running():  # not after a failed warm-up or a crashed thread
                manager.stop(block=True, timeout=STOP_TIMEOUT_S)
        finally:
            manager.destroy()

    # -- phases --------------------------------------------------------------------------------
    def prefill(self) -> None:
        """Run the batch with one new token per request: prefill and the first output token."""
        self._generate_tokens(1)

    def decode(self) -> int:
        """Refuse: continuous batching cannot resume a request after its prefill.

        Raises:
            EngineError: Always; the runner derives decode as whole generation minus prefill.
        """
        raise EngineError(
            "hf-paged cannot run decode on its own (separate_decode = False): continuous batching "
            "finishes a request in one go, so the runner derives decode as total minus prefill"
        )

    def generate(self) -> int:
        """Run the batch to exactly `output_tokens` new tokens per request; return the tokens made."""
        batch = self._require_batch()
        self._generate_tokens(batch.output_tokens)
        return batch.batch_size * batch.output_tokens

    def _generate_tokens(self, max_new_tokens: int) -> None:
        """Submit the B prompts, wait for the B results and check each has `max_new_tokens` tokens."""
        batch = self._require_batch()
        manager = self._manager
        if manager is None or self.prompt_ids is None:
            raise EngineError("prepare() must be called first")
        request_ids = manager.add_requests(inputs=self.prompt_ids, max_new_tokens=max_new_tokens)
        pending = set(request_ids)
        results: dict[str, Any] = {}
        while pending:
            result = manager.get_result(timeout=RESULT_POLL_S)
            if result is None:
                if not manager.is_running():
                    raise self._scheduler_failure(manager, "the scheduler thread stopped")
                continue
            if result.request_id not in pending or not result.is_finished():
                continue
            if result.error is not None:
                raise self._scheduler_failure(manager, result.error)
            results[result.request_id] = result
            pending.discard(result.request_id)
        self.output_ids = [list(results[rid].generated_tokens) for rid in request_ids]
        lengths = sorted({len(tokens) for tokens in self.output_ids})
        if lengths != [max_new_tokens] or len(self.output_ids) != batch.batch_size:
            raise EngineError(
                f"hf-paged: asked {batch.batch_size} requests for {max_new_tokens} new tokens each, got "
                f"{len(self.output_ids)} requests with lengths {lengths}"
            )

    def _scheduler_failure(self, manager: Any, message: str) -> EngineError:
        """Return the error to raise for a failed request: `OutOfMemory` when the thread ran out of memory."""
        import torch

        # A fatal error fails the requests first and is recorded just after: give the thread a moment.
        deadline_s = time.monotonic() + 5.0
        while manager.is_running() and time.monotonic() < deadline_s:
            time.sleep(0.01)
        fatal = manager.background_thread_status.fatal_error
        if isinstance(fatal, torch.OutOfMemoryError | MemoryError) or "out of memory" in message.lower():
            return OutOfMemory(f"hf-paged: {str(fatal or message).splitlines()[0]}")
        detail = message if fatal is None else f"{type(fatal).__name__}: {fatal}"
        return EngineError(f"hf-paged: continuous batching failed: {detail}")

    def generated_tokens(self) -> int:
        """Return the new tokens per request of the last call (tests check the exact length)."""
        return 0 if not self.output_ids else len(self.output_ids[0])

    def describe(self) -> dict[str, Any]:
        """Return engine facts: versions, device, dtype, attention and paged-cache settings.

        Before `prepare`, `num_blocks` and `max_batch_tokens` are the configured values (None: sized
        from the batch); after it, the values in use, with the scheduler settings transformers chose.
        """
        num_blocks, max_batch_tokens = self._cache_size or (
            self.config.num_blocks,
            self.config.max_batch_tokens,
        )
        facts: dict[str, Any] = {
            **transformers_facts(self.name, self.config),
            "attn_implementation": self.config.attn_implementation,
            "block_size": self.config.block_size,
            "num_blocks": num_blocks,
            "max_batch_tokens": max_batch_tokens,
            "prefix_sharing": False,
        }
        if self._manager is not None:
            resolved = self._manager.continuous_batching_config
            facts["use_cuda_graph"] = list(resolved.use_cuda_graph)
            facts["use_async_batching"] = bool(resolved.use_async_batching)
            facts["max_requests_per_batch"] = resolved.max_requests_per_batch
            facts["scheduler"] = resolved.scheduler_type
        return facts

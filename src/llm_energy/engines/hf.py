"""Transformers engine: greedy generation with forced output length, prefill and decode apart.

Modes (the software-stack axis of the seed study):

* `eager` — the naive PyTorch baseline: a dynamic KV cache, one kernel launch per op, no compile.
* `compiled` — static KV cache + `torch.compile` (inductor kernels, no CUDA graphs).
* `cudagraphs` — static KV cache + `torch.compile(mode="reduce-overhead")`: kernels replayed from
  CUDA graphs, removing the per-step launch overhead that makes eager decode launch-bound.

We run our own loop instead of `model.generate` so that prefill and decode are separate calls the
runner can put in separate meter windows, the output length is exact (no EOS check at all), and
only the argmax of the last position is computed (`logits_to_keep=1`). Compilation and CUDA-graph
capture happen in `prepare`, which the runner times apart from steady-state energy.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_energy.architectures import Architecture, build_model
from llm_energy.engines.base import Batch, oom_as_error
from llm_energy.errors import ConfigError, EngineError

logger = logging.getLogger(__name__)

HFMode = Literal["eager", "compiled", "cudagraphs"]


class HFEngineConfig(BaseModel):
    """Configuration of the transformers engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: HFMode = Field("eager", description="eager | compiled | cudagraphs")
    device: str = Field("cuda", description="torch device: cuda, cuda:1, cpu")
    dtype: str = Field("bfloat16", description="weights and activations dtype")
    init: Literal["normal", "uniform", "zeros"] = Field("normal", description="random weight init")
    seed: int = Field(0, description="seed for weights and input token ids")


class HFEngine:
    """Transformers causal LM with an explicit prefill / decode loop (see module docstring)."""

    name: ClassVar[str] = "hf"
    separate_decode: ClassVar[bool] = True
    Config: ClassVar[type[HFEngineConfig]] = HFEngineConfig

    def __init__(self, config: HFEngineConfig, arch: Architecture) -> None:
        if config.mode == "cudagraphs" and not config.device.startswith("cuda"):
            raise ConfigError(
                f"mode 'cudagraphs' needs a CUDA device (got {config.device!r}); use eager or compiled on CPU"
            )
        self.config = config
        self.arch = arch
        self.model: Any = None
        self._batch: Batch | None = None
        self._input_ids: Any = None
        self._cache: Any = None
        self._first_token: Any = None
        self._step: Any = None
        self.output_ids: Any = None

    # -- lifecycle -----------------------------------------------------------------------------
    def load(self) -> None:
        """Build the model with random weights (or load the local checkpoint) on the device."""
        with oom_as_error():
            self.model = build_model(
                self.arch,
                device=self.config.device,
                dtype=self.config.dtype,
                init=self.config.init,
                seed=self.config.seed,
            )

    def prepare(self, batch: Batch) -> None:
        """Make input ids and the KV cache for `batch`, compile if the mode needs it, and warm up."""
        import torch

        if self.model is None:
            self.load()
        self._batch = batch
        self._cache = None
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
        ids = torch.randint(0, self.arch.vocab_size, (batch.batch_size, batch.input_tokens), generator=gen)
        self._input_ids = ids.to(self.config.device)
        with oom_as_error():
            if self.config.mode == "eager":
                self._step = self._forward_argmax
            else:
                from transformers import StaticCache

                # A new shape compiles anew: drop earlier graphs (and their CUDA-graph memory) so a
                # sweep over many shapes neither leaks memory nor hits dynamo's recompile limit and
                # silently falls back to eager.
                torch._dynamo.reset()
                self._cache = StaticCache(
                    config=self.model.config, max_cache_len=batch.input_tokens + batch.output_tokens
                )
                # One eager call first: the static cache allocates its tensors lazily on first use,
                # which must not happen inside the compiled (fullgraph) region.
                with torch.inference_mode():
                    self._forward_argmax(
                        self._input_ids,
                        torch.arange(batch.input_tokens, device=self.config.device),
                        self._cache,
                    )
                compile_mode = "reduce-overhead" if self.config.mode == "cudagraphs" else "default"
                # dynamic=False: one graph per shape (prefill [B, L_in], decode [B, 1]), no guards on sizes.
                self._step = torch.compile(
                    self._forward_argmax, mode=compile_mode, fullgraph=True, dynamic=False
                )
            # Warm-up: compile and capture both shapes (CUDA graphs are recorded on the second call),
            # then one full generation so the caching allocator holds every block the shape needs
            # (on the H100 host, an eager decode's first full run took 2x longer than later ones).
            for _ in range(1 if self.config.mode == "eager" else 3):
                self.prefill()
                self._decode_steps(min(batch.decode_steps, 3))
            self.prefill()
            self._decode_steps(batch.decode_steps)
            self.synchronize()

    def close(self) -> None:
        """Drop the model and free device memory."""
        self.model = self._cache = self._step = self._input_ids = self._first_token = None
        self.output_ids = None
        if self.config.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- phases --------------------------------------------------------------------------------
    def _forward_argmax(self, input_ids: Any, cache_position: Any, cache: Any) -> Any:
        out = self.model(
            input_ids=input_ids,
            past_key_values=cache,
            cache_position=cache_position,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].argmax(dim=-1)

    def _call(self, input_ids: Any, start: int) -> Any:
        import torch

        pos = torch.arange(start, start + input_ids.shape[1], device=self.config.device)
        if self.config.mode == "cudagraphs":
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
            # Outputs of a CUDA graph are overwritten by its next replay: keep a copy.
            return self._step(input_ids, pos, self._cache).clone()
        return self._step(input_ids, pos, self._cache)

    def prefill(self) -> None:
        """Run prefill over the prepared batch; the first output token of every request results."""
        import torch

        batch = self._require_batch()
        with torch.inference_mode(), oom_as_error():
            if self.config.mode == "eager":
                from transformers import DynamicCache

                self._cache = DynamicCache(config=self.model.config)
            else:
                self._rewind_static_cache(0)
            self._first_token = self._call(self._input_ids, 0)
        self.output_ids = None
        del batch

    def decode(self) -> int:
        """Generate the remaining `output_tokens - 1` tokens per request after the last prefill.

        Each call starts again right after prefill (the KV cache is rewound), so repeated calls do
        identical work.
        """
        batch = self._require_batch()
        if self._first_token is None:
            raise EngineError("decode() called before prefill()")
        self._decode_steps(batch.decode_steps)
        return batch.decode_tokens

    def _decode_steps(self, steps: int) -> None:
        import torch

        batch = self._require_batch()
        tokens = [self._first_token]
        token = self._first_token
        with torch.inference_mode(), oom_as_error():
            if self.config.mode != "eager":
                self._rewind_static_cache(batch.input_tokens)
            elif self._cache.get_seq_length() > batch.input_tokens:
                self._cache.crop(
                    batch.input_tokens - self._cache.get_seq_length()
                )  # negative: tokens to drop
            for i in range(steps):
                token = self._call(token[:, None], batch.input_tokens + i)
                tokens.append(token)
        self.output_ids = tokens

    def _rewind_static_cache(self, position: int) -> None:
        # transformers' StaticLayer writes at its own `cumulative_length` counter (a static-address
        # tensor), not at the cache_position we pass; set it in place so graphs stay valid. Stale
        # entries beyond `position` are masked by the causal mask built from cache_position.
        for layer in self._cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.cumulative_length.fill_(position)

    def generated_tokens(self) -> int:
        """Return how many output tokens per request the last decode produced (tests check L_out)."""
        return 0 if self.output_ids is None else len(self.output_ids)

    def generate(self) -> int:
        """Run prefill then decode; return output tokens of the whole batch."""
        self.prefill()
        batch = self._require_batch()
        return batch.batch_size + (self.decode() if batch.decode_steps > 0 else 0)

    def synchronize(self) -> None:
        """Wait for queued CUDA work (no-op on CPU)."""
        if self.config.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.config.device)

    def describe(self) -> dict[str, Any]:
        """Return engine facts: versions, device, dtype, mode."""
        import torch
        import transformers

        facts: dict[str, Any] = {
            "engine": self.name,
            "mode": self.config.mode,
            "device": self.config.device,
            "dtype": self.config.dtype,
            "init": self.config.init,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        if self.config.device.startswith("cuda"):
            facts["cuda"] = torch.version.cuda
        return facts

    def _require_batch(self) -> Batch:
        if self._batch is None:
            raise EngineError("prepare() must be called first")
        return self._batch

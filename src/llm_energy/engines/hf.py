"""Transformers engine: generation with forced output length, prefill and decode apart.

Modes (the software-stack axis of the seed study):

* `eager` — the naive PyTorch baseline: a dynamic KV cache, one kernel launch per op, no compile.
* `compiled` — static KV cache + `torch.compile` (inductor kernels, no CUDA graphs).
* `cudagraphs` — static KV cache + `torch.compile(mode="reduce-overhead")`: kernels replayed from
  CUDA graphs, removing the per-step launch overhead that makes eager decode launch-bound.

Both static-cache modes decode with attention `grouped_sdpa` (`hf_attention`). transformers' `sdpa`
copies every layer's whole static cache ``num_attention_heads / num_key_value_heads`` times per decode
step (a masked call cannot use SDPA's native grouped-query path). By byte count that is 3x the memory
traffic of a Llama-3.1-8B decode step at batch 64 (64 GB instead of 21 GB; eager moves 30 GB), the likely
reason CUDA graphs cost more energy per token than eager there (`benchmarks/hf_decode_profile.py`
measures both paths). `grouped_attention: false` keeps transformers' `sdpa` (the old path, for comparison).

We run our own loop instead of `model.generate` so that prefill and decode are separate calls the
runner can put in separate meter windows, the output length is exact (no EOS check at all), and
only the last position's logits are computed (`logits_to_keep=1`). Compilation and CUDA-graph
capture happen in `prepare`, which the runner times apart from steady-state energy.

Decoding strategies (`decoding`), all in every mode, all with exact output lengths:

* `greedy` — argmax of the logits.
* `sample`, `top-k`, `top-p` — temperature sampling, optionally restricted to the `top_k` most likely
  tokens or to the smallest set holding `top_p` of the probability. Sampling uses the Gumbel-max
  trick: the token is ``argmax(logits / T + G)`` with ``G = -log(-log U)``, which is distributed as
  ``softmax(logits / T)`` over the kept tokens. The uniform noise ``U`` is drawn *outside* the compiled
  step, in place into one static buffer, from a `torch.Generator` seeded with `seed`, and passed in as
  an input. So the step stays a pure function of its inputs (one graph, capturable as a CUDA graph,
  no RNG state inside the graph), every mode draws the same noise, and runs are reproducible.
* `beam` — beam search with `num_beams` beams per request. Prefill runs once per request; its KV
  cache is then copied to the request's `num_beams` rows, and each decode step scores the
  ``num_beams x vocab`` continuations of every request, keeps the best `num_beams`, and reorders the
  cache rows to follow their parents. The best beam is returned. Decode therefore computes
  ``num_beams`` times the tokens it returns: `decode_tokens_computed` says how many.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator

from llm_energy.architectures import Architecture, build_model
from llm_energy.architectures.counts import num_experts
from llm_energy.engines.base import (
    Batch,
    EngineDescriptor,
    SeparateDecodeMixin,
    oom_as_error,
    transformers_facts,
)
from llm_energy.engines.hf_decoding import beam_candidates, sample_tokens
from llm_energy.engines.transformers_config import TransformersConfig
from llm_energy.errors import ConfigError, EngineError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

HFMode = Literal["eager", "compiled", "cudagraphs"]

Decoding = Literal["greedy", "sample", "top-p", "top-k", "beam"]
"""How the next token is chosen from the logits (see the module docstring)."""

DECODING_STRATEGIES: tuple[str, ...] = get_args(Decoding)
"""The accepted values of `HFEngineConfig.decoding`."""

SAMPLING_STRATEGIES: tuple[str, ...] = ("sample", "top-p", "top-k")
"""The strategies that draw random tokens (and use `temperature`)."""


class HFEngineConfig(TransformersConfig):
    """Configuration of the transformers engine."""

    mode: HFMode = Field("eager", description="eager | compiled | cudagraphs")
    seed: int = Field(0, description="seed for weights, input token ids and sampling noise")
    decoding: Decoding = Field("greedy", description="greedy | sample | top-p | top-k | beam")
    temperature: float = Field(1.0, description="softmax temperature of sample, top-k and top-p (> 0)")
    top_p: float = Field(0.9, description="probability mass top-p keeps, in (0, 1]")
    top_k: int = Field(50, description="most likely tokens top-k keeps (>= 1; capped at the vocabulary)")
    num_beams: int = Field(4, description="beams per request of beam search (>= 2)")
    warmup: bool = Field(True, description="eager only: warm up in prepare (validate warms up once instead)")
    grouped_attention: bool = Field(
        True,
        description="compiled/cudagraphs: decode attention reads the static cache's grouped K/V heads "
        "in place (false: transformers' sdpa, which copies them every step)",
    )

    @field_validator("temperature")
    @classmethod
    def _check_temperature(cls, value: float) -> float:
        if not value > 0:  # also rejects NaN
            raise ValueError(f"temperature must be > 0, got {value!r}")
        return value

    @field_validator("top_p")
    @classmethod
    def _check_top_p(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {value!r}")
        return value

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"top_k must be >= 1, got {value!r}")
        return value

    @field_validator("num_beams")
    @classmethod
    def _check_num_beams(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"num_beams must be >= 2 (1 beam is greedy), got {value!r}")
        return value


class HFEngine(SeparateDecodeMixin):
    """Transformers causal LM with an explicit prefill / decode loop (see module docstring)."""

    name: ClassVar[str] = "hf"
    separate_decode: ClassVar[bool] = True
    Config: ClassVar[type[HFEngineConfig]] = HFEngineConfig
    descriptor: ClassVar[EngineDescriptor] = EngineDescriptor(
        modes=("eager", "compiled", "cudagraphs"),
        extra="hf",
        requires=("torch", "transformers"),
        packages=("torch", "transformers"),
        batching="static",
        request_set_options={"eager": {"warmup": False}},  # a request set warms up once, not per batch
        compile_s={"compiled": 60.0, "cudagraphs": 90.0},  # on the H100 (docs/results/foundation-h100.md)
        # eager on the H200: preparing a point took 2.6 of its generations (median of 28; 1.7-4.1), the
        # warm-up (prefill + 3 steps, then a whole generation) and first-touch work on new shapes
        # (docs/results/2026-12-02-h200-calibrate-hf-eager-and-vllm/runs.csv, `compile_s`)
        warmup_generations=2.6,
        tp_modes=("eager",),  # compiled graphs over transformers' TP hooks are not validated
        tp_builder="llm_energy.engines.hf_tp:build_tp_engine",
    )

    def __init__(self, config: HFEngineConfig, arch: Architecture) -> None:
        if config.mode == "cudagraphs" and not config.device.startswith("cuda"):
            raise ConfigError(
                f"mode 'cudagraphs' needs a CUDA device (got {config.device!r}); use eager or compiled on CPU"
            )
        if config.decoding == "beam" and config.num_beams > arch.vocab_size:
            raise ConfigError(
                f"num_beams = {config.num_beams} exceeds {arch.name}'s vocabulary of {arch.vocab_size} tokens"
            )
        self.config = config
        self.arch = arch
        self.model: Any = None
        self._batch: Batch | None = None
        self._input_ids: Any = None
        self._cache: Any = None
        self._prefill_cache: Any = None  # beam search with a static cache: B rows, L_in positions
        self._first_token: Any = None
        self._first_scores: Any = None
        self._step: Any = None
        self._uniform: Any = None
        self._noise: Any = None
        self._noise_state: Any = None
        self._beams = config.num_beams if config.decoding == "beam" else 1
        self.output_ids: Any = None
        self.sequence_logprobs: Any = None
        """Beam search only: summed log-probability of each returned sequence, ``[batch]``."""

    @property
    def decode_tokens_computed(self) -> int:
        """Tokens one `decode()` call computes: ``batch x beams x (output_tokens - 1)``.

        Equal to the tokens it returns (`Batch.decode_tokens`) except for beam search, which runs every
        beam through the model and returns only the best.
        """
        return self._require_batch().decode_tokens * self._beams

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
        self._cache = self._prefill_cache = None
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
        ids = torch.randint(0, self.arch.vocab_size, (batch.batch_size, batch.input_tokens), generator=gen)
        self._input_ids = ids.to(self.config.device)
        decoding = self.config.decoding
        with oom_as_error():
            step: Any = self._forward_argmax
            if decoding in SAMPLING_STRATEGIES:
                step = self._forward_sample
                self._noise = torch.Generator(device=self.config.device)
                self._uniform = torch.empty(
                    (batch.batch_size, self.arch.vocab_size), dtype=torch.float32, device=self.config.device
                )
            elif decoding == "beam":
                step = self._forward_beam
            from llm_energy.engines.hf_attention import set_decode_attention

            if self.config.mode == "eager":
                set_decode_attention(self.model, grouped=False)  # a model shared with a static mode
                self._step = step
            else:
                from transformers import StaticCache

                # A new shape compiles anew: drop earlier graphs (and their CUDA-graph memory) so a
                # sweep over many shapes neither leaks memory nor hits dynamo's recompile limit and
                # silently falls back to eager.
                torch._dynamo.reset()
                set_decode_attention(self.model, grouped=self.config.grouped_attention)
                self._cache = StaticCache(
                    config=self.model.config, max_cache_len=batch.input_tokens + batch.output_tokens
                )
                # One eager call first: the static cache allocates its tensors lazily on first use,
                # which must not happen inside the compiled (fullgraph) region.
                with torch.inference_mode():
                    positions = torch.arange(batch.input_tokens, device=self.config.device)
                    if decoding == "beam":
                        # Prefill fills a B-row cache; decode runs B x beams rows in a cache of its own.
                        self._prefill_cache = StaticCache(
                            config=self.model.config, max_cache_len=batch.input_tokens
                        )
                        self._logits(self._input_ids, positions, self._prefill_cache)
                        rows = self._input_ids[:, :1].repeat_interleave(self._beams, dim=0)
                        self._logits(rows, positions[:1], self._cache)
                    else:
                        self._logits(self._input_ids, positions, self._cache)
                if self._uniform is not None:
                    # Filled in place before each step: a fixed address that CUDA graphs read directly.
                    torch._dynamo.mark_static_address(self._uniform)
                compile_mode = "reduce-overhead" if self.config.mode == "cudagraphs" else "default"
                # dynamic=False: one graph per shape (prefill [B, L_in], decode [B, 1]), no guards on sizes.
                self._step = torch.compile(step, mode=compile_mode, fullgraph=True, dynamic=False)
            # Warm-up: compile and capture both shapes (CUDA graphs are recorded on the second call),
            # then one full generation so the caching allocator holds every block the shape needs
            # (on the H100 host, an eager decode's first full run took 2x longer than later ones).
            if self.config.mode == "eager" and not self.config.warmup:
                return
            for _ in range(1 if self.config.mode == "eager" else 3):
                self.prefill()
                self._decode_steps(min(batch.decode_steps, 3))
            self.prefill()
            self._decode_steps(batch.decode_steps)
            self.synchronize()

    def close(self) -> None:
        """Drop the model and free device memory."""
        self.model = self._cache = self._prefill_cache = self._step = self._input_ids = None
        self._first_token = self._first_scores = self._uniform = self._noise = self._noise_state = None
        self.output_ids = self.sequence_logprobs = None
        if self.config.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- phases --------------------------------------------------------------------------------
    def _logits(self, input_ids: Any, cache_position: Any, cache: Any) -> Any:
        out = self.model(
            input_ids=input_ids,
            past_key_values=cache,
            cache_position=cache_position,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :]

    def _forward_argmax(self, input_ids: Any, cache_position: Any, cache: Any) -> Any:
        return self._logits(input_ids, cache_position, cache).argmax(dim=-1)

    def _forward_sample(self, input_ids: Any, cache_position: Any, cache: Any, uniform: Any) -> Any:
        c = self.config
        return sample_tokens(
            self._logits(input_ids, cache_position, cache),
            uniform,
            decoding=c.decoding,
            temperature=c.temperature,
            top_k=c.top_k,
            top_p=c.top_p,
        )

    def _forward_beam(self, input_ids: Any, cache_position: Any, cache: Any, beam_scores: Any) -> Any:
        logits = self._logits(input_ids, cache_position, cache)
        return beam_candidates(logits, beam_scores, self.config.num_beams)

    def _call(self, input_ids: Any, start: int, *extra: Any, cache: Any = None) -> Any:
        import torch

        cache = self._cache if cache is None else cache
        pos = torch.arange(start, start + input_ids.shape[1], device=self.config.device)
        if self.config.mode == "cudagraphs":
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
            # Outputs of a CUDA graph are overwritten by its next replay: keep a copy.
            out = self._step(input_ids, pos, cache, *extra)
            return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()
        return self._step(input_ids, pos, cache, *extra)

    def _draw_noise(self) -> Any:
        self._uniform.uniform_(0.0, 1.0, generator=self._noise)
        return self._uniform

    def prefill(self) -> None:
        """Run prefill over the prepared batch; the first output token of every request results.

        For beam search, the first token of each of the ``num_beams`` beams, and the prompt's KV cache
        copied to every beam.
        """
        import torch

        batch = self._require_batch()
        decoding = self.config.decoding
        with torch.inference_mode(), oom_as_error():
            if self.config.mode == "eager":
                from transformers import DynamicCache

                self._cache = DynamicCache(config=self.model.config)
            else:
                self._rewind_static_cache(0)
            if decoding in SAMPLING_STRATEGIES:
                self._noise.manual_seed(self.config.seed)
                self._first_token = self._call(self._input_ids, 0, self._draw_noise())
                self._noise_state = self._noise.get_state()  # decode goes on from here, every time
            elif decoding == "beam":
                self._prefill_beams(batch)
            else:
                self._first_token = self._call(self._input_ids, 0)
        self.output_ids = self.sequence_logprobs = None

    def _prefill_beams(self, batch: Batch) -> None:
        import torch

        start = torch.zeros((batch.batch_size, 1), dtype=torch.float32, device=self.config.device)
        if self.config.mode == "eager":
            scores, _, tokens = self._call(self._input_ids, 0, start)
            self._cache.batch_repeat_interleave(self._beams)
        else:
            self._rewind_static_cache(0, self._prefill_cache)
            scores, _, tokens = self._call(self._input_ids, 0, start, cache=self._prefill_cache)
            n = batch.input_tokens
            for small, big in zip(self._prefill_cache.layers, self._cache.layers, strict=True):
                big.keys[:, :, :n].copy_(small.keys.repeat_interleave(self._beams, dim=0))
                big.values[:, :, :n].copy_(small.values.repeat_interleave(self._beams, dim=0))
        self._first_token, self._first_scores = tokens, scores

    def decode(self) -> int:
        """Generate the remaining `output_tokens - 1` tokens per request after the last prefill.

        Each call starts again right after prefill (the KV cache is rewound, the sampling noise
        replayed), so repeated calls do identical work and give identical tokens.

        Returns:
            Tokens returned: ``batch x (output_tokens - 1)``; see `decode_tokens_computed` for the
            tokens computed, which beam search multiplies by ``num_beams``.
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
            if self.config.decoding == "beam":
                self._decode_beams(steps)
                return
            if self.config.decoding in SAMPLING_STRATEGIES:
                self._noise.set_state(self._noise_state)
                for i in range(steps):
                    token = self._call(token[:, None], batch.input_tokens + i, self._draw_noise())
                    tokens.append(token)
            else:
                for i in range(steps):
                    token = self._call(token[:, None], batch.input_tokens + i)
                    tokens.append(token)
        self.output_ids = tokens

    def _decode_beams(self, steps: int) -> None:
        import torch

        batch = self._require_batch()
        b, beams = batch.batch_size, self._beams
        tokens, scores = self._first_token, self._first_scores
        offsets = torch.arange(b, device=self.config.device)[:, None] * beams
        history, parents = [tokens], []
        for i in range(steps):
            scores, parent, tokens = self._call(tokens.reshape(b * beams, 1), batch.input_tokens + i, scores)
            history.append(tokens)
            parents.append(parent)
            if i < steps - 1:  # the last tokens are never fed back: their parents' cache is not needed
                self._reorder_cache((offsets + parent).reshape(-1), batch.input_tokens + i + 1)
        # Candidates come best first, so beam 0 is the best; follow its parents back to the prompt.
        beam = torch.zeros((b, 1), dtype=torch.long, device=self.config.device)
        best: list[Any] = []
        for t in range(steps, -1, -1):
            best.append(history[t].gather(1, beam)[:, 0])
            if t > 0:
                beam = parents[t - 1].gather(1, beam)
        self.output_ids = best[::-1]
        self.sequence_logprobs = scores[:, 0]

    def _reorder_cache(self, rows: Any, length: int) -> None:
        # Each row of the cache takes the history of the beam it now continues.
        if self.config.mode == "eager":
            self._cache.reorder_cache(rows)
            return
        # Static cache: in place (compiled graphs hold these addresses), and only the filled positions.
        for layer in self._cache.layers:
            for kv in (layer.keys[:, :, :length], layer.values[:, :, :length]):
                kv.copy_(kv.index_select(0, rows))

    def _rewind_static_cache(self, position: int, cache: Any = None) -> None:
        # transformers' StaticLayer writes at its own `cumulative_length` counter (a static-address
        # tensor), not at the cache_position we pass; set it in place so graphs stay valid. Stale
        # entries beyond `position` are masked by the causal mask, which transformers builds from
        # that counter.
        for layer in (self._cache if cache is None else cache).layers:
            if getattr(layer, "is_initialized", False):
                layer.cumulative_length.fill_(position)

    def describe(self) -> dict[str, Any]:
        """Return engine facts: versions, device, dtype, mode, and the decoding strategy's settings."""
        facts = {**transformers_facts(self.name, self.config), "decoding": self.config.decoding}
        c = self.config
        if c.decoding in SAMPLING_STRATEGIES:
            facts["temperature"] = c.temperature
        if c.decoding == "top-k":
            facts["top_k"] = min(c.top_k, self.arch.vocab_size)
        if c.decoding == "top-p":
            facts["top_p"] = c.top_p
        if c.decoding == "beam":
            facts["num_beams"] = c.num_beams
        attention = getattr(getattr(self.model, "config", None), "_attn_implementation", None)
        if attention is not None:  # grouped_sdpa in the static-cache modes (module docstring)
            facts["attention"] = attention
        experts = getattr(getattr(self.model, "config", None), "_experts_implementation", None)
        if experts is not None and num_experts(self.arch) > 1:  # grouped_mm vs a per-expert loop: MoE cost
            facts["experts_implementation"] = experts
        return facts

"""Speculative decoding in our own HF loop: a draft model proposes, the target verifies (greedy).

Each round the draft runs ``g = min(lookahead, tokens still to make - 1)`` single-token steps and
proposes ``d1..dg``; the target then runs once over ``[last, d1..dg]`` (``g + 1`` tokens per row) and
its argmax at each position says which proposals it would have made itself. The longest agreeing
prefix ``d1..da`` is kept plus the target's own next token, so a round returns ``a + 1`` tokens and
the output is exactly the target's greedy output. The rejected tail is removed from both KV caches
(`DynamicCache.crop`), so the caches are rewound to the accepted length.

Batches advance by the **batch minimum** of the rows' accepted counts: every row keeps
``min_r a_r`` proposals plus one target token (for a row that accepted more, that target token *is*
its next proposal, so nothing is wrong, only re-done next round). transformers' caches are
rectangular (one length for every row), so per-row advance would need ragged caches and per-row
position ids and masks; batch-minimum keeps one length and costs acceptance at batch > 1, which
`modeling.speculative` models apart (``policy="batch-min"``) from the per-row policy vLLM uses.

With ``spec_agree`` the final RMSNorm weight of both models is zeroed, so every logit is 0 and both
models argmax to token 0: acceptance is 1 by construction while every matmul still runs on the same
shapes (only that norm's output, the lm_head's input, is zero). Eager mode only (dynamic cache).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from llm_energy.architectures import Architecture, build_model, load_architecture
from llm_energy.engines.base import (
    Batch,
    EngineDescriptor,
    SeparateDecodeMixin,
    oom_as_error,
    transformers_facts,
)
from llm_energy.engines.transformers_config import TransformersConfig
from llm_energy.errors import ConfigError, EngineError

DRAFT_SEED_OFFSET = 1
"""The draft's weights use ``seed + 1``: a draft of the target's own shape still disagrees with it."""


class HFSpeculativeConfig(TransformersConfig):
    """Configuration of the speculative-decoding engine (`hf-spec`)."""

    mode: Literal["eager"] = Field("eager", description="eager only (dynamic KV cache, cropped on rejection)")
    seed: int = Field(0, description="seed for the target's weights and the inputs; the draft uses seed + 1")
    draft_model: str = Field(
        "llama-3.2-1b",
        description="draft: bundled architecture name or local checkpoint dir (the seed's pair)",
    )
    lookahead: int = Field(4, description="tokens γ the draft proposes per round (>= 1)")
    spec_agree: bool = Field(False, description="zero both final norms so draft and target always agree")

    @field_validator("lookahead")
    @classmethod
    def _check_lookahead(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"lookahead (γ) must be >= 1, got {value!r}")
        return value


@dataclass
class SpecStats:
    """What one `decode()` did; counts are over all rows of the batch.

    Attributes:
        rounds: Target verification calls (one per round).
        draft_steps: Draft forward calls.
        proposed: Draft tokens proposed (rows x proposals).
        accepted_per_row: Proposals the target agreed with, counted per row (what per-row advance keeps).
        accepted_batch: Proposals kept under batch-minimum advance (rows x min accepted, summed).
        target_tokens_computed: Token positions the target computed (rows x (g + 1) per round).
        draft_tokens_computed: Token positions the draft computed.
        tokens_returned: Output tokens returned (rows x (output_tokens - 1)).
    """

    rounds: int = 0
    draft_steps: int = 0
    proposed: int = 0
    accepted_per_row: int = 0
    accepted_batch: int = 0
    target_tokens_computed: int = 0
    draft_tokens_computed: int = 0
    tokens_returned: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Measured per-row acceptance: accepted / proposed (NaN when nothing was proposed)."""
        return self.accepted_per_row / self.proposed if self.proposed else float("nan")

    @property
    def batch_acceptance_rate(self) -> float:
        """Acceptance the batch actually advanced by (batch minimum): kept / proposed."""
        return self.accepted_batch / self.proposed if self.proposed else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Return the counts and both acceptance rates."""
        return {
            **asdict(self),
            "acceptance_rate": self.acceptance_rate,
            "batch_acceptance_rate": self.batch_acceptance_rate,
        }


def zero_final_norm(model: Any) -> None:
    """Zero the weight of `model`'s final RMSNorm in place, so every logit is 0 and argmax is token 0.

    Raises:
        EngineError: the model has no ``model.norm.weight`` (Llama/OLMo/Qwen2 naming).
    """
    import torch

    norm = getattr(getattr(model, "model", None), "norm", None)
    weight = getattr(norm, "weight", None)
    if weight is None:
        raise EngineError(f"{type(model).__name__} has no final norm at model.norm.weight to zero")
    with torch.no_grad():
        weight.zero_()


def _crop(cache: Any, length: int) -> None:
    # DynamicCache.crop takes a negative count of tokens to drop (a positive value is deprecated).
    drop = cache.get_seq_length() - length
    if drop > 0:
        cache.crop(-drop)


class HFSpeculativeEngine(SeparateDecodeMixin):
    """Target + draft transformers models with greedy speculative decoding (see module docstring)."""

    name: ClassVar[str] = "hf-spec"
    separate_decode: ClassVar[bool] = True
    Config: ClassVar[type[HFSpeculativeConfig]] = HFSpeculativeConfig
    descriptor: ClassVar[EngineDescriptor] = EngineDescriptor(
        modes=("eager",),
        extra="hf",
        requires=("torch", "transformers"),
        packages=("torch", "transformers"),
        batching="static",
    )

    def __init__(self, config: HFSpeculativeConfig, arch: Architecture) -> None:
        draft_arch = load_architecture(config.draft_model)  # light: a config file, no weights
        if draft_arch.vocab_size != arch.vocab_size:
            raise ConfigError(
                f"draft model {config.draft_model!r} has a vocabulary of {draft_arch.vocab_size} tokens but "
                f"the target {arch.name!r} has {arch.vocab_size}: speculative decoding needs one vocabulary"
            )
        self.config = config
        self.arch = arch
        self.draft_arch = draft_arch
        self.model: Any = None
        self.draft: Any = None
        self._batch: Batch | None = None
        self._input_ids: Any = None
        self._cache: Any = None
        self._draft_cache: Any = None
        self._first_token: Any = None
        self.output_ids: list[Any] | None = None
        self.stats = SpecStats()
        """Counts of the last `decode()` (acceptance, draft steps, verification calls, tokens)."""

    @property
    def decode_tokens_computed(self) -> int:
        """Token positions the target computed in the last decode (rejected proposals included)."""
        return self.stats.target_tokens_computed

    # -- lifecycle -----------------------------------------------------------------------------
    def load(self) -> None:
        """Build whichever of target and draft is not set yet; zero their final norms with spec_agree."""
        c = self.config
        with oom_as_error():
            if self.model is None:
                self.model = build_model(self.arch, device=c.device, dtype=c.dtype, init=c.init, seed=c.seed)
            if self.draft is None:
                self.draft = build_model(
                    self.draft_arch,
                    device=c.device,
                    dtype=c.dtype,
                    init=c.init,
                    seed=c.seed + DRAFT_SEED_OFFSET,
                )
        if c.spec_agree:
            zero_final_norm(self.model)
            zero_final_norm(self.draft)

    def prepare_inputs(self, batch: Batch) -> None:
        """Load if needed and make the input ids (the same as the `hf` engine's for a seed); no warm-up."""
        import torch

        if self.model is None or self.draft is None:
            self.load()
        self._batch = batch
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
        ids = torch.randint(0, self.arch.vocab_size, (batch.batch_size, batch.input_tokens), generator=gen)
        self._input_ids = ids.to(self.config.device)

    def prepare(self, batch: Batch) -> None:
        """Make the input ids and warm up with one whole generation."""
        self.prepare_inputs(batch)
        # One full generation, so the caching allocator holds every block the shape needs (as `hf`).
        self.prefill()
        if batch.decode_steps > 0:
            self.decode()
        self.synchronize()

    def close(self) -> None:
        """Drop both models and free device memory."""
        self.model = self.draft = self._cache = self._draft_cache = self._input_ids = None
        self._first_token = self.output_ids = None
        if self.config.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- phases --------------------------------------------------------------------------------
    def _forward(self, model: Any, cache: Any, input_ids: Any, start: int, keep: int) -> Any:
        """Return the argmax over the last `keep` positions, ``[rows, keep]``."""
        import torch

        pos = torch.arange(start, start + input_ids.shape[1], device=self.config.device)
        out = model(
            input_ids=input_ids,
            past_key_values=cache,
            cache_position=pos,
            use_cache=True,
            logits_to_keep=keep,
        )
        return out.logits.argmax(dim=-1)

    def prefill(self) -> None:
        """Prefill the target (its first output token) and the draft (its cache) over the prompt."""
        import torch
        from transformers import DynamicCache

        self._require_batch()
        with torch.inference_mode(), oom_as_error():
            self._cache = DynamicCache(config=self.model.config)
            self._draft_cache = DynamicCache(config=self.draft.config)
            self._first_token = self._forward(self.model, self._cache, self._input_ids, 0, 1)[:, 0]
            self._forward(self.draft, self._draft_cache, self._input_ids, 0, 1)
        self.output_ids = None

    def decode(self) -> int:
        """Generate the remaining `output_tokens - 1` tokens per request by draft-and-verify rounds.

        Each call starts again right after prefill (both caches cropped to the prompt), so repeated
        calls do identical work. `stats` holds the counts of this call.

        Returns:
            Tokens returned: ``batch x (output_tokens - 1)``.
        """
        import torch

        batch = self._require_batch()
        if self._first_token is None:
            raise EngineError("decode() called before prefill()")
        rows, prompt, gamma = batch.batch_size, batch.input_tokens, self.config.lookahead
        stats = SpecStats()
        seq = [self._first_token]  # committed output tokens; seq[j] sits at position prompt + j
        with torch.inference_mode(), oom_as_error():
            _crop(self._cache, prompt)
            _crop(self._draft_cache, prompt)
            draft_len = prompt  # positions held in the draft cache
            while len(seq) < batch.output_tokens:
                n = prompt + len(seq) - 1  # position of seq[-1], the last token not yet in the target cache
                g = min(gamma, batch.output_tokens - len(seq) - 1)
                proposals: list[Any] = []
                feed = torch.stack(seq[draft_len - prompt :], dim=1)  # committed tokens the draft lacks
                for _ in range(g):
                    token = self._forward(self.draft, self._draft_cache, feed, draft_len, 1)[:, 0]
                    stats.draft_steps += 1
                    stats.draft_tokens_computed += rows * feed.shape[1]
                    draft_len += feed.shape[1]
                    proposals.append(token)
                    feed = token[:, None]
                verify = torch.stack([seq[-1], *proposals], dim=1)  # [rows, g + 1]
                predicted = self._forward(self.model, self._cache, verify, n, g + 1)
                stats.rounds += 1
                stats.target_tokens_computed += rows * (g + 1)
                accepted = 0
                if g:
                    agree = predicted[:, :g] == verify[:, 1:]
                    per_row = agree.long().cumprod(dim=1).sum(dim=1)  # leading agreements per row
                    accepted = int(per_row.min())  # one host sync per round: the batch's advance
                    stats.proposed += rows * g
                    stats.accepted_per_row += int(per_row.sum())
                    stats.accepted_batch += rows * accepted
                seq.extend(proposals[:accepted])
                seq.append(predicted[:, accepted])
                # Rewind: keep the verified prefix [last, d1..da] in the target cache, and in the draft
                # cache whatever of it the draft has already seen (it never saw its last proposal).
                _crop(self._cache, n + accepted + 1)
                draft_len = min(draft_len, n + accepted + 1)
                _crop(self._draft_cache, draft_len)
        stats.tokens_returned = batch.decode_tokens
        self.stats = stats
        self.output_ids = seq
        return batch.decode_tokens

    # -- component costs for the energy model (modeling.speculative) -----------------------------
    def draft_steps_only(self, steps: int) -> int:
        """Run `steps` single-token draft steps after prefill, then crop the draft cache back.

        The body of the draft-step cost window; returns the steps run.
        """
        import torch

        batch = self._require_batch()
        with torch.inference_mode(), oom_as_error():
            _crop(self._draft_cache, batch.input_tokens)
            token = self._first_token[:, None]
            for i in range(steps):
                token = self._forward(self.draft, self._draft_cache, token, batch.input_tokens + i, 1)
            _crop(self._draft_cache, batch.input_tokens)
        return steps

    def verify_only(self, calls: int) -> int:
        """Run `calls` target verifications of ``lookahead + 1`` tokens per row, each rewound after.

        The body of the verification cost window; returns the calls run.
        """
        import torch

        batch = self._require_batch()
        width = self.config.lookahead + 1
        tokens = self._first_token[:, None].expand(-1, width).contiguous()
        with torch.inference_mode(), oom_as_error():
            for _ in range(calls):
                _crop(self._cache, batch.input_tokens)
                self._forward(self.model, self._cache, tokens, batch.input_tokens, width)
            _crop(self._cache, batch.input_tokens)
        return calls

    def describe(self) -> dict[str, Any]:
        """Return engine facts, and after a decode the measured acceptance and token counts."""
        c = self.config
        facts: dict[str, Any] = {
            **transformers_facts(self.name, c),
            "decoding": "greedy",
            "draft_model": self.draft_arch.name,
            "draft_seed": c.seed + DRAFT_SEED_OFFSET,
            "lookahead": c.lookahead,
            "spec_agree": c.spec_agree,
            "advance": "batch-min",
        }
        if self.stats.rounds:
            facts["speculative"] = self.stats.as_dict()
        return facts

"""vLLM engine: the offline `LLM` API on random weights, whole generations only.

vLLM runs requests through its own scheduler, so prefill and decode cannot be called apart:
`separate_decode` is False and the runner derives decode as (whole generation − prefill), both
measured windows (`decode_by_difference`). Prefill here is a generation of exactly one token.

Modes (the software-stack axis, as for the transformers engine):

* `cudagraphs` — vLLM's default: torch.compile plus CUDA-graph capture, done in `load()`.
* `eager` — `enforce_eager=True`: no compile, no graphs.

The model is built once in `load()` with vLLM's dummy loader, which draws every weight uniform in
±1e-3 (so `init` can only be ``"uniform"``), from the architecture's `config.json` and without a
tokenizer. vLLM must know its longest sequence (`max_model_len`) and its concurrency
(`max_num_seqs`) when it is built and preallocates the KV cache for them; a batch of B requests
runs as one batch only when B ≤ `max_num_seqs` and the KV cache holds all B sequences, and
`prepare` refuses batches that would not, instead of letting vLLM queue or preempt requests and
silently measure something else. Prefix caching stays off: the repeated prefills of a meter
window would otherwise hit the cache and measure nothing.

`generate_requests` (the continuous path of `validate`) also reports each request's TTFT, TPOT and
E2E in `last_request_latencies_s`, from the engine-core timestamps of vLLM's per-request statistics
(`RequestOutput.metrics`, a `RequestStateStats`), which vLLM keeps only with its statistics on
(`disable_log_stats=False`, which the offline `LLM` turns off by default).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_energy.architectures import Architecture
from llm_energy.engines.base import Batch, EngineDescriptor
from llm_energy.errors import ConfigError, EngineError, LlmEnergyError, OutOfMemory

logger = logging.getLogger(__name__)

VllmMode = Literal["cudagraphs", "eager"]

DEFAULT_MAX_MODEL_LEN = 8192 + 512
"""Longest sequence (input + output tokens) the engine is built for unless configured, clipped to the
architecture's `max_context_tokens`."""

NO_USAGE_STATS_ENV: dict[str, str] = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
"""Environment that keeps vLLM from sending usage statistics (vLLM's opt-out variables). Set unless
`usage_stats` is True, by the engine (in this process, before vLLM is imported) and by the server
launcher (in the server's environment): measurements should not phone home."""

_ARCHITECTURES_BY_MODEL_TYPE: dict[str, str] = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "olmoe": "OlmoeForCausalLM",
}
"""vLLM picks its model class from the config's ``architectures``; fill it in when a config lacks it."""


class VllmEngineConfig(BaseModel):
    """Configuration of the vLLM engine (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: VllmMode = Field("cudagraphs", description="cudagraphs | eager (enforce_eager=True)")
    device: str = Field("cuda", description="cuda or cpu; the installed vLLM build picks the device")
    dtype: str = Field("bfloat16", description="weights and activations dtype")
    init: Literal["uniform"] = Field("uniform", description="uniform ±1e-3: vLLM's dummy loader")
    seed: int = Field(0, description="seed of vLLM and of the input token ids")
    max_num_seqs: int = Field(
        256, gt=0, description="most requests vLLM runs at once; a batch must not exceed it"
    )
    max_model_len: int | None = Field(
        None, gt=0, description="longest input + output, tokens; None: 8704 clipped to the model's"
    )
    max_num_batched_tokens: int | None = Field(
        None, gt=0, description="tokens per scheduler step (prefill chunking); None: vLLM's default"
    )
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="fraction of device memory vLLM may take (weights + KV cache)"
    )
    enable_prefix_caching: bool = Field(False, description="must stay False (see module docstring)")
    usage_stats: bool = Field(
        False, description="let vLLM report usage statistics (off: VLLM_NO_USAGE_STATS=1, DO_NOT_TRACK=1)"
    )

    @field_validator("init", mode="before")
    @classmethod
    def _only_uniform(cls, value: Any) -> Any:
        if value != "uniform":
            raise ValueError(
                f"init {value!r} is not available with vllm: its dummy loader draws every weight "
                "uniform in ±1e-3; use init 'uniform' (or engine hf for other inits)"
            )
        return value

    @field_validator("enable_prefix_caching")
    @classmethod
    def _no_prefix_caching(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "prefix caching must stay off: repeated prefills of the same prompts would hit the "
                "cache and the prefill window would measure nothing"
            )
        return value


class VllmEngine:
    """vLLM's offline `LLM` on random weights; prefill and whole generations (see module docstring)."""

    name: ClassVar[str] = "vllm"
    separate_decode: ClassVar[bool] = False
    Config: ClassVar[type[VllmEngineConfig]] = VllmEngineConfig
    descriptor: ClassVar[EngineDescriptor] = EngineDescriptor(
        modes=("cudagraphs", "eager"),
        extra="vllm",
        requires=("vllm",),
        packages=("torch", "transformers", "vllm"),
        batching="continuous",
        batch_option="max_num_seqs",
        context_option="max_model_len",
        load_s=90.0,  # start-up with CUDA graphs; 83 s measured on an H100 (docs/results)
        load_budget_s=100.0,
        compile_s={"cudagraphs": 90.0},
    )

    def __init__(self, config: VllmEngineConfig, arch: Architecture) -> None:
        if config.mode == "cudagraphs" and not config.device.startswith("cuda"):
            raise ConfigError(
                f"mode 'cudagraphs' needs a CUDA device (got {config.device!r}); use eager on CPU"
            )
        if config.device not in ("cuda", "cuda:0", "cpu"):
            # vLLM takes the first visible device itself; choosing one is the environment's job.
            raise ConfigError(
                f"vllm runs on the first visible device; for {config.device!r} set "
                "CUDA_VISIBLE_DEVICES and use device 'cuda'"
            )
        self.config = config
        self.arch = arch
        limit = arch.max_context_tokens
        self.max_model_len = min(config.max_model_len or DEFAULT_MAX_MODEL_LEN, limit)
        if config.max_model_len is not None and config.max_model_len > limit:
            raise ConfigError(
                f"max_model_len {config.max_model_len} exceeds {arch.name}'s max_context_tokens {limit}"
            )
        self.llm: Any = None
        self._model_dir: str | None = None
        self._batch: Batch | None = None
        self._prompts: list[Any] = []
        self._full_params: Any = None
        self._prefill_params: Any = None
        self.last_request_latencies_s: list[tuple[float, float, float]] | None = None
        """(ttft_s, tpot_s, e2e_s) of each request of the last `generate_requests`, in request order;
        None when that call failed or vLLM gave no usable per-request timing."""

    # -- lifecycle -----------------------------------------------------------------------------
    def load(self) -> None:
        """Build vLLM's `LLM` (random weights unless the architecture has a checkpoint path).

        With `cudagraphs` this includes torch.compile and graph capture, so it takes minutes.

        Raises:
            OutOfMemory: weights or the KV cache for one `max_model_len` sequence do not fit.
            EngineError: vLLM failed to start (its log holds the root cause).
        """
        from llm_energy.compat import shield_broken_amdsmi

        shield_broken_amdsmi()  # vLLM's engine processes import Ray, which imports amdsmi unguarded
        if not self.config.usage_stats:
            # Before the import: vLLM (and its engine-core processes, which inherit the environment)
            # read these to decide whether to report usage.
            os.environ.update(NO_USAGE_STATS_ENV)
        from vllm import LLM

        model_dir = self.arch.path or self._write_config_dir()
        kwargs: dict[str, Any] = {
            "model": model_dir,
            "skip_tokenizer_init": True,
            "dtype": self.config.dtype,
            "enforce_eager": self.config.mode == "eager",
            "seed": self.config.seed,
            "max_num_seqs": self.config.max_num_seqs,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.config.gpu_memory_utilization,
            "enable_prefix_caching": False,
            # Per-request timing (RequestOutput.metrics) exists only with vLLM's statistics on; the
            # offline LLM turns them off by default. They cost a few timestamps and counters per
            # request and step, in the frontend process (overlapping the engine core's next step)
            # and the scheduler, plus one log line of throughput every VLLM_LOG_STATS_INTERVAL.
            "disable_log_stats": False,
        }
        if self.arch.path is None:
            kwargs["load_format"] = "dummy"
        if self.config.max_num_batched_tokens is not None:
            kwargs["max_num_batched_tokens"] = self.config.max_num_batched_tokens
        logger.info("building vllm LLM: %s", kwargs)
        with _vllm_errors():
            self.llm = LLM(**kwargs)

    def _write_config_dir(self) -> str:
        config = dict(self.arch.config)
        if not config.get("architectures"):
            model_type = self.arch.model_type
            if model_type not in _ARCHITECTURES_BY_MODEL_TYPE:
                raise ConfigError(
                    f"architecture {self.arch.name!r}: config has no 'architectures' and model_type "
                    f"{model_type!r} has no known vLLM class; add 'architectures' to its config"
                )
            config["architectures"] = [_ARCHITECTURES_BY_MODEL_TYPE[model_type]]
        self._model_dir = tempfile.mkdtemp(prefix="llm-energy-vllm-")
        (Path(self._model_dir) / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        return self._model_dir

    def prepare(self, batch: Batch) -> None:
        """Make B random prompts of exactly `input_tokens` ids and warm up with one generation.

        Raises:
            ConfigError: the batch exceeds `max_num_seqs` or `max_model_len`.
            OutOfMemory: vLLM's KV cache cannot hold the whole batch, so vLLM would queue or preempt
                requests instead of running one batch.
        """
        import numpy as np
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self.llm is None:
            self.load()
        self._check_fits(batch)
        rng = np.random.default_rng([self.config.seed, batch.seed])
        ids = rng.integers(0, self.arch.vocab_size, size=(batch.batch_size, batch.input_tokens))
        self._prompts = [TokensPrompt(prompt_token_ids=row.tolist()) for row in ids]

        def params(tokens: int) -> Any:
            # Greedy and EOS ignored: every request yields exactly `tokens` ids; no detokenizer.
            return SamplingParams(
                max_tokens=tokens, min_tokens=tokens, ignore_eos=True, temperature=0.0, detokenize=False
            )

        self._full_params = params(batch.output_tokens)
        self._prefill_params = params(1)
        self._batch = batch
        self.generate()

    def _check_fits(self, batch: Batch) -> None:
        if batch.batch_size > self.config.max_num_seqs:
            raise ConfigError(
                f"batch_size {batch.batch_size} exceeds max_num_seqs {self.config.max_num_seqs}: vLLM "
                "would not run the batch at once; raise the engine's max_num_seqs"
            )
        seq_tokens = batch.input_tokens + batch.output_tokens
        if seq_tokens > self.max_model_len:
            raise ConfigError(
                f"input_tokens + output_tokens = {seq_tokens} exceeds max_model_len {self.max_model_len}; "
                "raise the engine's max_model_len"
            )
        cache = self.llm.llm_engine.vllm_config.cache_config
        blocks, block_size = getattr(cache, "num_gpu_blocks", None), getattr(cache, "block_size", None)
        if blocks and block_size:
            needed = batch.batch_size * math.ceil(seq_tokens / block_size)
            if needed > blocks:
                # Otherwise vLLM would queue or preempt requests: not one batch of B any more.
                raise OutOfMemory(
                    f"the batch needs {needed} KV-cache blocks of {block_size} tokens but vLLM has "
                    f"{blocks}; raise gpu_memory_utilization or lower batch_size"
                )

    def close(self) -> None:
        """Shut vLLM's engine down, free device memory and remove the temporary config dir."""
        if self.llm is not None:
            with contextlib.suppress(Exception):
                # The engine core runs in its own process; stop it rather than wait for GC.
                self.llm.llm_engine.engine_core.shutdown()
            self.llm = None
            self._prompts = []
            import gc

            with contextlib.suppress(Exception):
                from vllm.distributed.parallel_state import (
                    destroy_distributed_environment,
                    destroy_model_parallel,
                )

                destroy_model_parallel()
                destroy_distributed_environment()
            gc.collect()
            if self.config.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
        if self._model_dir is not None:
            shutil.rmtree(self._model_dir, ignore_errors=True)
            self._model_dir = None

    # -- phases --------------------------------------------------------------------------------
    def _run(self, params: Any, tokens: int) -> int:
        batch = self._require_batch()
        with _vllm_errors():
            outputs = self.llm.generate(self._prompts, params, use_tqdm=False)
        lengths = [len(out.outputs[0].token_ids) for out in outputs]
        if len(lengths) != batch.batch_size or any(n != tokens for n in lengths):
            raise EngineError(
                f"vllm returned {len(lengths)} outputs of lengths {sorted(set(lengths))}; "
                f"expected {batch.batch_size} of {tokens} tokens"
            )
        return sum(lengths)

    def generate_requests(
        self, input_tokens: Sequence[int], output_tokens: Sequence[int], seed: int = 0
    ) -> int:
        """Submit requests of these exact lengths at once; vLLM batches them (at most `max_num_seqs`).

        Continuous batching decides who runs with whom, as in a real offline job; used by `validate`.
        Sets `last_request_latencies_s` (None first, so a failed call leaves none behind): per request,
        TTFT = its first token − the submission of all of them, TPOT = (last token − first token) /
        (output tokens − 1), 0 for a single token (as vLLM's own mean time per output token), and
        E2E = its last token − the submission; None, with a warning, where vLLM gave no timing.

        Returns:
            Output tokens generated (checked equal to the requested total).

        Raises:
            ConfigError: a request exceeds `max_model_len`.
            EngineError: an output does not have its requested length.
        """
        import numpy as np
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.last_request_latencies_s = None
        if self.llm is None:
            self.load()
        rng = np.random.default_rng([self.config.seed, seed])
        prompts, params = [], []
        for lin, lout in zip(input_tokens, output_tokens, strict=True):
            if lin + lout > self.max_model_len:
                raise ConfigError(
                    f"a request of {lin} + {lout} tokens exceeds max_model_len {self.max_model_len}"
                )
            prompts.append(TokensPrompt(prompt_token_ids=rng.integers(0, self.arch.vocab_size, lin).tolist()))
            params.append(
                SamplingParams(
                    max_tokens=lout, min_tokens=lout, ignore_eos=True, temperature=0.0, detokenize=False
                )
            )
        # The engine core stamps tokens with time.monotonic() (CLOCK_MONOTONIC, shared by the
        # processes of one host); the submission is stamped on the same clock here.
        submitted_s = time.monotonic()
        with _vllm_errors():
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        returned_s = time.monotonic()
        got = [len(out.outputs[0].token_ids) for out in outputs]
        if got != list(output_tokens):
            raise EngineError(f"vllm returned {sum(got)} output tokens; expected {sum(output_tokens)}")
        self.last_request_latencies_s = _request_latencies(outputs, submitted_s, returned_s)
        return sum(got)

    def prefill(self) -> None:
        """Generate one token per request: prefill of the whole batch (plus one sampling step)."""
        self._run(self._prefill_params, 1)

    def generate(self) -> int:
        """Generate exactly `output_tokens` per request; return output tokens of the whole batch.

        Raises:
            EngineError: an output does not have exactly `output_tokens` ids.
        """
        return self._run(self._full_params, self._require_batch().output_tokens)

    def decode(self) -> int:
        """Not available: vLLM only runs whole generations.

        Raises:
            EngineError: always; the runner derives decode as generate − prefill instead.
        """
        raise EngineError("vllm cannot decode apart; the runner derives decode as generate − prefill")

    def synchronize(self) -> None:
        """Wait for queued CUDA work (generate already returns after its last step)."""
        if self.config.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def describe(self) -> dict[str, Any]:
        """Return engine facts: versions, mode, dtype, concurrency and length limits, KV-cache size."""
        import vllm

        facts: dict[str, Any] = {
            "engine": self.name,
            "vllm": vllm.__version__,
            "mode": self.config.mode,
            "device": self.config.device,
            "dtype": self.config.dtype,
            "init": "uniform (vLLM dummy loader)" if self.arch.path is None else "checkpoint",
            "max_num_seqs": self.config.max_num_seqs,
            "max_model_len": self.max_model_len,
            "max_num_batched_tokens": self.config.max_num_batched_tokens,
            "gpu_memory_utilization": self.config.gpu_memory_utilization,
            "enable_prefix_caching": False,
            "disable_log_stats": False,
        }
        if self.llm is not None:
            cache = self.llm.llm_engine.vllm_config.cache_config
            facts["kv_cache_blocks"] = getattr(cache, "num_gpu_blocks", None)
            facts["kv_block_tokens"] = getattr(cache, "block_size", None)
            # The chunk a long prompt is prefilled in (vLLM picks it when the option is left unset).
            sched = self.llm.llm_engine.vllm_config.scheduler_config
            facts["scheduler_max_num_batched_tokens"] = getattr(sched, "max_num_batched_tokens", None)
        return facts

    def _require_batch(self) -> Batch:
        if self._batch is None or self.llm is None:
            raise EngineError("prepare() must be called first")
        return self._batch


def _request_latencies(
    outputs: Sequence[Any], submitted_s: float, returned_s: float
) -> list[tuple[float, float, float]] | None:
    """(ttft_s, tpot_s, e2e_s) per output from vLLM's per-request statistics, or None (logged).

    Only the engine core's monotonic `first_token_ts` / `last_token_ts` are used, against this
    process's `time.monotonic()` around `generate`: `arrival_time` and `first_token_latency` are on
    the wall clock (time.time()) and are never mixed with them. Timestamps outside the call's own
    window (an engine core on another clock) are refused rather than reported.
    """
    latencies: list[tuple[float, float, float]] = []
    for k, out in enumerate(outputs):
        stats = getattr(out, "metrics", None)
        first = getattr(stats, "first_token_ts", None)
        last = getattr(stats, "last_token_ts", None)
        if not isinstance(first, float) or not isinstance(last, float):
            logger.warning(
                "latency not measured: vllm gave request %d no first_token_ts/last_token_ts "
                "(RequestOutput.metrics is %s); per-request statistics need disable_log_stats=False",
                k,
                type(stats).__name__,
            )
            return None
        if not submitted_s <= first <= last <= returned_s:
            logger.warning(
                "latency not measured: vllm's first/last token timestamps of request %d (%.6f, %.6f) "
                "are not in order within this call's monotonic window [%.6f, %.6f] (is vllm's engine "
                "core stamping them on another clock?)",
                k,
                first,
                last,
                submitted_s,
                returned_s,
            )
            return None
        tokens = len(out.outputs[0].token_ids)
        tpot = (last - first) / (tokens - 1) if tokens > 1 else 0.0
        latencies.append((first - submitted_s, tpot, last - submitted_s))
    return latencies


_OOM_MARKERS = ("out of memory", "kv cache", "gpu_memory_utilization", "cache blocks")


@contextlib.contextmanager
def _vllm_errors() -> Iterator[None]:
    """Map vLLM's failures to `OutOfMemory` / `EngineError`, so the runner stores `oom` or `error`.

    vLLM's engine core runs in another process by default: when it fails, this process only sees
    "Engine core initialization failed" or `EngineDeadError`, and the root cause is in vLLM's log.
    """
    import torch

    try:
        yield
    except LlmEnergyError:
        raise
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(_first_line(exc)) from exc
    except Exception as exc:
        first = _first_line(exc)
        lowered = first.lower()
        # A KV cache that does not fit raises ValueError in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0).
        if "out of memory" in lowered or (
            isinstance(exc, ValueError) and any(m in lowered for m in _OOM_MARKERS)
        ):
            raise OutOfMemory(first) from exc
        raise EngineError(f"vllm {type(exc).__name__}: {first}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]

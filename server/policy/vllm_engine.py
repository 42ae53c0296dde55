"""The default policy: vLLM's `AsyncLLM` running in this process.

vLLM batches everything in flight, so a wave of prompts is submitted as concurrent
requests and continuous batching merges them with other clients' work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_strategies.protocols import ChatMessage, Completion, Generation, SamplingConfig
from server.policy.errors import PolicyRejected, PolicyUnavailable
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """The vLLM engine settings Ponder exposes (see `server.settings`)."""

    model: str
    served_model_name: str
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.25
    enforce_eager: bool = False
    block_size: int | None = None
    dtype: str = "auto"
    tensor_parallel_size: int = 1

    @classmethod
    def from_settings(
        cls, settings: Settings, model: str, served_model_name: str, gpu_memory_utilization: float
    ) -> EngineOptions:
        """The server's engine settings for one of its engines (policy or PRM)."""
        return cls(
            model=model,
            served_model_name=served_model_name,
            max_model_len=settings.max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            block_size=settings.block_size,
            dtype=settings.dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
        )


class VLLMPolicy:
    """A `Policy` backed by an in-process vLLM engine."""

    def __init__(self, engine: Any, served_model_name: str) -> None:
        self._engine = engine
        self._name = served_model_name
        self._tokenizer = engine.get_tokenizer()
        #: Prompts must leave room for at least one generated token.
        self._max_model_len: int | None = getattr(
            getattr(engine, "model_config", None), "max_model_len", None
        )

    @classmethod
    def start(cls, options: EngineOptions) -> VLLMPolicy:
        from vllm.v1.engine.async_llm import AsyncLLM

        engine = AsyncLLM.from_engine_args(engine_args(options))
        return cls(engine, options.served_model_name)

    @property
    def model_name(self) -> str:
        return self._name

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        continuing = bool(turns) and turns[-1]["role"] == "assistant"
        text = self._tokenizer.apply_chat_template(
            turns,
            tokenize=False,
            add_generation_prompt=not continuing,
            continue_final_message=continuing,
        )
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        """Submit every prompt at once; cancellation aborts them all in the engine."""
        self._raise_if_dead()
        self._check_prompt_lengths(prompts)
        sampling = sampling_params(params)
        tasks = [asyncio.create_task(self._generate_one(p, sampling)) for p in prompts]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()  # each task's engine request is aborted by vLLM
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _generate_one(self, prompt: Sequence[int], sampling: Any) -> Generation:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            async for output in self._engine.generate(
                TokensPrompt(prompt_token_ids=list(prompt)),
                sampling,
                request_id=f"ponder-{uuid.uuid4().hex}",
            ):
                final = output
        except EngineDeadError as error:
            raise PolicyUnavailable(f"vLLM engine died: {error}") from error
        except _client_errors() as error:  # e.g. the prompt is longer than the context
            raise PolicyRejected(str(error)) from error
        if final is None:
            raise PolicyUnavailable("vLLM engine returned no output")
        completions = tuple(
            Completion(
                token_ids=tuple(sample.token_ids),
                text=sample.text,
                logprobs=_sampled_logprobs(sample.token_ids, sample.logprobs),
                finish_reason=sample.finish_reason or "abort",
                top_logprobs=_top_logprobs(sample.logprobs) if sampling.logprobs else (),
            )
            for sample in sorted(final.outputs, key=lambda s: s.index)
        )
        return Generation(
            prompt_tokens=len(prompt),
            completions=completions,
            cached_prompt_tokens=final.num_cached_tokens or 0,
        )

    def _check_prompt_lengths(self, prompts: Sequence[Sequence[int]]) -> None:
        """Refuse (as the client's error) prompts that leave no room to generate."""
        if self._max_model_len is None:
            return
        longest = max((len(p) for p in prompts), default=0)
        if longest >= self._max_model_len:
            raise PolicyRejected(
                f"the prompt is {longest} tokens, but the maximum model length "
                f"(context) is {self._max_model_len} tokens, including the answer"
            )

    def _raise_if_dead(self) -> None:
        if self._engine is None:
            raise PolicyUnavailable("vLLM engine is shut down")
        if self._engine.errored:
            raise PolicyUnavailable("vLLM engine is not running (it failed earlier)")

    async def check_health(self) -> None:
        self._raise_if_dead()
        try:
            await self._engine.check_health()
        except Exception as error:  # EngineDeadError and friends
            raise PolicyUnavailable(f"vLLM engine is unhealthy: {error}") from error

    def running_requests(self) -> int:
        """Requests the engine still tracks; 0 after every request was finished or aborted."""
        return int(self._engine.output_processor.get_num_unfinished_requests())

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            # Shut down now, while the interpreter is whole. (vLLM still holds a
            # reference of its own, so AsyncLLM.__del__ runs again at exit and
            # prints a harmless TypeError once the engine is already gone.)
            engine.shutdown()


def _client_errors() -> type[Exception]:
    """vLLM's "your request is invalid" errors (older vLLMs raise plain ValueError)."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:
        return ValueError
    return VLLMClientError


#: At most this many CPUs, vLLM's CPU build computes on all of them (see below).
SMALL_CPU_COUNT = 4


def bind_all_cores_on_small_cpus(environ: MutableMapping[str, str] = os.environ) -> None:
    """On a CPU-only machine with few cores, let vLLM's worker compute on all of them.

    vLLM's CPU build keeps one core free for its scheduler process and binds its
    OpenMP threads to the rest. On 2 cores that halves the model's compute: on this
    project's 2-core machine (SmolLM2-135M, eager float32) binding both decoded 1.45x
    faster at n=1 and 1.77x at n=16 (`benchmarks/bench_cpu_cores.py`, medians of 3).
    On bigger machines the reserved core costs little and vLLM's default stays. A
    `VLLM_CPU_OMP_THREADS_BIND` the user set always wins. Must run before the engine
    process starts (it reads the variable when it spawns).
    """
    if "VLLM_CPU_OMP_THREADS_BIND" in environ or has_cuda():
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if 1 < len(cores) <= SMALL_CPU_COUNT:
        environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(core) for core in cores)


def has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def engine_args(options: EngineOptions) -> Any:
    """vLLM engine arguments for `options`; shared with the overhead benchmark."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    bind_all_cores_on_small_cpus()
    block_size = resolve_block_size(options.block_size)
    return AsyncEngineArgs(
        model=options.model,
        served_model_name=[options.served_model_name],
        max_model_len=options.max_model_len,
        gpu_memory_utilization=options.gpu_memory_utilization,
        enforce_eager=options.enforce_eager,
        dtype=resolve_dtype(options.dtype),
        tensor_parallel_size=options.tensor_parallel_size,
        enable_prefix_caching=True,
        # Seeded requests rewind their sampler's generator when a sampled token is
        # discarded after a partial (chunked) prefill; CPU generators cannot rewind
        # and the engine dies. Whole-prompt prefills never discard, so seeds are
        # safe under any load, at some cost in latency for very long prompts.
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(options.max_model_len, 8192),
        **({"block_size": block_size} if block_size else {}),
    )


def sampling_params(params: SamplingConfig) -> Any:
    """vLLM `SamplingParams` for a config: sampled-token logprobs, all n at the end."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=params.n,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop=list(params.stop) or None,
        include_stop_str_in_output=params.include_stop,
        # The sampled token's own logprob always; alternatives only when asked.
        logprobs=params.top_logprobs,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


#: The KV block size on CPU when `--block-size` is unset (see `resolve_block_size`).
CPU_BLOCK_SIZE = 32


def resolve_block_size(block_size: int | None) -> int | None:
    """Unset means 32 on a CPU and vLLM's own default (None) on CUDA.

    The CPU build's default block is large (apparently 128 tokens), and the prefix
    cache only reuses whole blocks, so a tree search whose siblings share a prompt
    plus a few short steps mostly missed it: beam search read 17 % of its prompt
    tokens from the cache, DVTS 24 %, MCTS 55 %; with 32 (the smallest the CPU
    attention accepts) 94 %, 95 %, 93 % (docs/benchmarks.md, "Prefix caching"). GPUs keep vLLM's
    choice, which was not measured here.
    """
    if block_size is not None or has_cuda():
        return block_size
    return CPU_BLOCK_SIZE


def resolve_dtype(dtype: str) -> str:
    """'auto' means float32 on a CPU without bf16 instructions.

    There, bf16 is emulated: on the AVX2-only EPYC it decoded SmolLM2-135M as fast
    as float32 at n=1 but 4.4x slower at n=16 (docs/benchmarks.md). GPUs and
    AVX-512-BF16/AMX CPUs keep 'auto' (bf16 decoded 1.6x faster on an AMX Xeon).
    """
    if dtype != "auto" or has_cuda():
        return dtype
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return dtype
    return dtype if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _sampled_logprobs(token_ids: Sequence[int], logprobs: Any) -> tuple[float, ...]:
    if not logprobs:
        return ()
    return tuple(position[token].logprob for token, position in zip(token_ids, logprobs))


def _top_logprobs(logprobs: Any) -> tuple[dict[str, float], ...]:
    if not logprobs:
        return ()
    return tuple(
        {(entry.decoded_token or ""): entry.logprob for entry in position.values()}
        for position in logprobs
    )

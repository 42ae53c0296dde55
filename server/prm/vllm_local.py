"""A PRM in this process: its own vLLM `AsyncLLM`, next to the policy's.

Qwen2.5-Math-PRM runs with the pooling runner (`token_classify` at the step tags,
given per request so any tokenizer's tag works); the token-logit PRMs run as a
normal generating engine asked for one token and the logprobs of the two labels
(`logprob_token_ids`). Engine arguments come from the policy's `engine_args`, so
both engines get the same CPU-safe settings (no chunked prefill, prefix caching).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from search_strategies.protocols import ChatMessage
from search_strategies.reward import RewardError, RewardUnavailable
from server.policy.vllm_engine import EngineOptions, engine_args


class LocalPRMBackend:
    """A `PRMBackend` over an in-process vLLM engine."""

    def __init__(self, engine: Any, description: str) -> None:
        self._engine = engine
        self._description = description
        self._tokenizer = engine.get_tokenizer()

    @classmethod
    def start(cls, options: EngineOptions, pooling: bool, name: str = "prm") -> LocalPRMBackend:
        """Start the engine (blocking, tens of seconds on CPU)."""
        from vllm.v1.engine.async_llm import AsyncLLM

        args = engine_args(options)
        if pooling:
            args = dataclasses.replace(args, runner="pooling")
        engine = AsyncLLM.from_engine_args(args)
        return cls(engine, f"reward backend {name!r} (in-process vLLM, {options.model})")

    @property
    def description(self) -> str:
        return self._description

    async def render_chat(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool
    ) -> list[int]:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        text = self._tokenizer.apply_chat_template(
            turns, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    async def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    async def classify_steps(
        self, prompts: Sequence[Sequence[int]], step_tag_id: int
    ) -> list[list[list[float]]]:
        from vllm import PoolingParams

        params = PoolingParams(task="token_classify", step_tag_id=step_tag_id)
        outputs = await self._all(
            self._last(self._live().encode(self._prompt(p), params, request_id=_request_id()))
            for p in prompts
        )
        return [output.outputs.data.float().tolist() for output in outputs]

    async def label_logprobs(
        self, prompts: Sequence[Sequence[int]], label_ids: Sequence[int]
    ) -> list[list[float]]:
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=1, temperature=0.0, logprob_token_ids=list(label_ids), detokenize=False
        )
        outputs = await self._all(
            self._last(self._live().generate(self._prompt(p), params, request_id=_request_id()))
            for p in prompts
        )
        reads = []
        for output in outputs:
            position = output.outputs[0].logprobs[0]
            reads.append([position[token].logprob for token in label_ids])
        return reads

    @staticmethod
    def _prompt(ids: Sequence[int]) -> Any:
        from vllm.inputs import TokensPrompt

        return TokensPrompt(prompt_token_ids=list(ids))

    def _live(self) -> Any:
        if self._engine is None:
            raise RewardUnavailable(f"{self._description}: engine is shut down")
        if self._engine.errored:
            raise RewardUnavailable(f"{self._description}: engine failed earlier")
        return self._engine

    @staticmethod
    async def _last(stream: AsyncIterator[Any]) -> Any:
        final = None
        async for output in stream:
            final = output
        return final

    async def _all(self, calls: Iterable[Any]) -> list[Any]:
        """Run every request at once (one engine batch); any failure aborts the rest."""
        from vllm.v1.engine.exceptions import EngineDeadError

        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            results = await asyncio.gather(*tasks)
        except EngineDeadError as error:
            raise RewardUnavailable(f"{self._description}: engine died: {error}") from error
        except (ValueError, TypeError) as error:  # vLLM's rejection of an input
            raise RewardError(f"{self._description}: input rejected: {error}") from error
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished ones; cancelled ones are aborted
            await asyncio.gather(*tasks, return_exceptions=True)
        if any(result is None for result in results):
            raise RewardUnavailable(f"{self._description}: engine returned no output")
        return results

    async def check_health(self) -> None:
        try:
            await self._live().check_health()
        except RewardUnavailable:
            raise
        except Exception as error:
            raise RewardUnavailable(f"{self._description}: unhealthy: {error}") from error

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()


def _request_id() -> str:
    return f"ponder-prm-{uuid.uuid4().hex}"

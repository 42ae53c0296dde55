"""A scripted policy for unit-testing strategy logic without an engine.

Never the only test of a feature: the same behaviour is tested over HTTP against
real vLLM in test_solve_http.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Sequence

from search_strategies.protocols import ChatMessage, Completion, Generation, SamplingConfig


@dataclass
class ScriptedPolicy:
    """Returns the scripted texts in order, one token per character, cut at max_tokens."""

    texts: list[str]
    logprob: float = -0.5
    delay_s: float = 0.0
    calls: list[tuple[int, SamplingConfig]] = field(default_factory=list)
    model_name: str = "scripted"

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return [ord(c) for m in messages for c in m.content]

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        self.calls.append((len(prompts), params))
        await asyncio.sleep(self.delay_s)
        result = []
        for prompt in prompts:
            samples = []
            for index in range(params.n):
                full = self.texts[index % len(self.texts)]
                text = full[: params.max_tokens]
                samples.append(
                    Completion(
                        token_ids=tuple(ord(c) for c in text),
                        text=text,
                        logprobs=(self.logprob,) * len(text),
                        finish_reason="stop" if text == full else "length",
                    )
                )
            result.append(Generation(prompt_tokens=len(prompt), completions=tuple(samples)))
        return result

"""The interfaces the search algorithms consume.

They live here, in the domain core, so that `server/` and `reward_clients/` depend on
the algorithms and never the other way round. Nothing in this package imports FastAPI
or vLLM: a strategy only sees token ids, text and numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a chat; kept as a turn all the way into the chat template."""

    role: str
    content: str


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample continuations of a prompt; engine-neutral on purpose."""

    n: int = 1
    max_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: Keep the stop string in the text and ids, so a step can be appended verbatim.
    include_stop: bool = True
    #: Also return this many most likely tokens at each position (judges read them).
    top_logprobs: int = 0


@dataclass(frozen=True)
class Completion:
    """One sampled continuation, with the ids it was generated as (the truth)."""

    token_ids: tuple[int, ...]
    text: str
    #: Log-probability of each generated token, aligned with `token_ids`.
    logprobs: tuple[float, ...]
    #: "stop" (EOS or a stop string), "length" (hit max_tokens) or "abort".
    finish_reason: str
    #: Per position, the most likely tokens (as text) and their log-probabilities;
    #: empty unless `SamplingConfig.top_logprobs` asked for them.
    top_logprobs: tuple[dict[str, float], ...] = ()

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float:
        """Mean token log-probability; -inf for an empty completion (never preferred)."""
        if not self.logprobs:
            return -math.inf
        return math.fsum(self.logprobs) / len(self.logprobs)


@dataclass(frozen=True)
class Generation:
    """All continuations of one prompt from one engine call."""

    prompt_tokens: int
    completions: tuple[Completion, ...]
    #: Prompt tokens the engine served from its prefix cache (0 when it cannot tell).
    cached_prompt_tokens: int = 0


@runtime_checkable
class Policy(Protocol):
    """A language model that samples continuations of token-id prompts.

    One `generate` call carries many prompts and `params.n` samples of each, so an
    implementation can hand the whole wave to the engine at once.
    """

    @property
    def model_name(self) -> str: ...

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Render messages through the model's chat template into prompt token ids,
        ending in an opened assistant turn, or, when the last message is the
        assistant's, in that turn left open so that generation continues it."""
        ...

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        """Sample `params.n` continuations of every prompt; one result per prompt."""
        ...


@dataclass
class Problem:
    """What a strategy is asked to solve."""

    question: str
    system_prompt: str | None = None
    #: Extra turns before the question (kept as turns, never flattened).
    history: list[ChatMessage] = field(default_factory=list)

    def messages(self) -> list[ChatMessage]:
        turns: list[ChatMessage] = []
        if self.system_prompt:
            turns.append(ChatMessage("system", self.system_prompt))
        turns.extend(self.history)
        turns.append(ChatMessage("user", self.question))
        return turns

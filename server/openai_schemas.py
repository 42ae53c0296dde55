"""Bodies of the OpenAI-compatible chat route (`/v1/chat/completions`).

The request follows OpenAI's schema: unknown fields are ignored (clients send many we
do not use), wrong types are a 400. The responses follow OpenAI's shapes exactly,
plus documented extension fields (`search` on usage and choices, `search_progress`
on stream chunks) that OpenAI clients ignore.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.schemas import SearchOptions, StrictJSONBody


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """One turn; `developer` is OpenAI's newer name for `system`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


class ChatCompletionRequest(StrictJSONBody):
    """OpenAI's chat request, plus `search` (the `/v1/solve` search options).

    Whole floats read as ints (`"n": 2.0`, which JSON Schema calls an integer).
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    search: SearchOptions | None = Field(
        None, description="Ponder extension: strategy, budget, reward, strategy fields."
    )

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceSearch(BaseModel):
    """Extension on each choice: what this choice's search found and why it stopped."""

    answer: str | None
    stopped_reason: str
    candidates: int
    #: As in /v1/solve: set when the reward backend failed and the request's
    #: `reward_fallback: "none"` let this search go on without reward.
    reward_error: str | None = None
    #: As in /v1/solve's `search.auto`: what the `auto` strategy chose, and why.
    auto: dict[str, Any] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: None = None
    search: ChoiceSearch


class SearchUsage(BaseModel):
    """Extension on `usage`: the search ledger, summed over all choices."""

    strategy: str
    reward: str | None
    engine_calls: int
    reward_calls: int
    reward_tokens: int
    scored_steps: int
    nodes: int
    #: One per choice, in choice order.
    stopped_reason: list[str]


class CompletionTokensDetails(BaseModel):
    #: Generated tokens that are not in the returned answers: the search's thinking.
    reasoning_tokens: int


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails
    search: SearchUsage


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage

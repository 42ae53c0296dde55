"""OpenAI response shapes built from finished (or running) searches.

Non-streamed completions, stream chunks (role, `search_progress`, content, finish,
usage) and the usage ledger summed over choices: the formatting half of the chat
route, kept apart from the request handling in `server.openai_api`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from search_strategies.budget import Progress
from search_strategies.results import Candidate
from server.openai_schemas import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageOut,
    ChatUsage,
    ChoiceSearch,
    CompletionTokensDetails,
    PromptTokensDetails,
    SearchUsage,
)
from server.service import SearchPlan, SearchRun
from server.sse import sse


@dataclass(frozen=True)
class ChatJob:
    """A parsed chat request and one planned search per choice."""

    request: ChatCompletionRequest
    plans: list[SearchPlan]
    completion_id: str
    created: int


class ChunkWriter:
    """Formats `chat.completion.chunk` events for one job."""

    def __init__(self, job: ChatJob) -> None:
        self._base = {
            "id": job.completion_id,
            "object": "chat.completion.chunk",
            "created": job.created,
            "model": job.request.model,
        }

    def delta(self, index: int, delta: dict[str, Any]) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return sse({**self._base, "choices": [choice]})

    def finish(self, index: int, finish: str, run: SearchRun) -> str:
        """The choice's last chunk: why it ended, and (extension) what its search found."""
        choice = {
            "index": index,
            "delta": {},
            "logprobs": None,
            "finish_reason": finish,
            "search": choice_search(run).model_dump(),
        }
        return sse({**self._base, "choices": [choice]})

    def progress(self, index: int, progress: Progress, plan: SearchPlan, elapsed_s: float) -> str:
        body = {
            "choice": index,
            "strategy": plan.strategy,
            "wave": progress.wave,
            "nodes": progress.nodes,
            "best_score": progress.best_score,
            "generated_tokens": progress.usage.generated_tokens,
            "prompt_tokens": progress.usage.prompt_tokens,
            "engine_calls": progress.usage.engine_calls,
            "reward_calls": progress.usage.reward_calls,
            "elapsed_s": round(elapsed_s, 3),
            "budget": {
                "max_tokens": plan.limits.max_tokens,
                "max_reward_calls": plan.limits.max_reward_calls,
                "time_limit_s": plan.limits.time_limit_s,
            },
        }
        choice = {"index": index, "delta": {}, "logprobs": None, "finish_reason": None}
        return sse({**self._base, "choices": [choice], "search_progress": body})

    def usage(self, usage: ChatUsage) -> str:
        return sse({**self._base, "choices": [], "usage": usage.model_dump()})


#: An OpenAI choice's `finish_reason` (as `ChatChoice` declares it).
FinishReason = Literal["stop", "length"]


def choice_answer(run: SearchRun, stops: list[str]) -> tuple[str, FinishReason]:
    """The chosen solution's text, cut at the first stop string, and its finish reason.

    The search explores whole solutions; `stop` applies to the text returned, which
    keeps strategies free to use their own stop strings for steps.
    """
    chosen: Candidate | None = run.result.chosen
    if chosen is None:  # the budget ran out before any solution existed
        return "", "length"
    text = chosen.text
    finish: FinishReason = "length" if chosen.finish_reason == "length" else "stop"
    cuts = [text.find(stop) for stop in stops if stop in text]
    if cuts:
        return text[: min(cuts)], "stop"
    return text, finish


def content_pieces(text: str, size: int = 48) -> list[str]:
    """The answer in word-aligned pieces of about `size` characters (joins back exactly)."""
    pieces: list[str] = []
    for word in re.split(r"(?<=\s)(?=\S)", text):
        if pieces and len(pieces[-1]) + len(word) <= size:
            pieces[-1] += word
        elif word:
            pieces.append(word)
    return pieces


def usage_body(runs: list[SearchRun], answers: list[tuple[str, FinishReason]]) -> ChatUsage:
    """OpenAI usage summed over every choice's search, with the search ledger attached."""
    total: dict[str, int] = {}
    for run in runs:
        for key, value in run.result.usage.as_dict().items():
            total[key] = total.get(key, 0) + value
    answer_tokens = sum(run.result.chosen.num_tokens for run in runs if run.result.chosen)
    return ChatUsage(
        prompt_tokens=total["prompt_tokens"],
        completion_tokens=total["generated_tokens"],
        total_tokens=total["prompt_tokens"] + total["generated_tokens"],
        prompt_tokens_details=PromptTokensDetails(cached_tokens=total["cached_prompt_tokens"]),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=max(0, total["generated_tokens"] - answer_tokens)
        ),
        search=SearchUsage(
            strategy=runs[0].strategy,
            reward=runs[0].reward,
            engine_calls=total["engine_calls"],
            reward_calls=total["reward_calls"],
            reward_tokens=total["reward_tokens"],
            scored_steps=total["scored_steps"],
            nodes=total["nodes"],
            stopped_reason=[run.result.stopped_reason.value for run in runs],
        ),
    )


def choice_search(run: SearchRun) -> ChoiceSearch:
    """The `search` extension of one choice."""
    return ChoiceSearch(
        answer=run.result.answer,
        stopped_reason=run.result.stopped_reason.value,
        candidates=len(run.result.candidates),
        reward_error=run.reward_error,
        auto=run.result.extra.get("auto"),
    )


def completion_body(job: ChatJob, runs: list[SearchRun]) -> ChatCompletion:
    answers = [choice_answer(run, job.request.stop_strings()) for run in runs]
    choices = [
        ChatChoice(
            index=index,
            message=ChatMessageOut(content=text),
            finish_reason=finish,
            search=choice_search(run),
        )
        for index, (run, (text, finish)) in enumerate(zip(runs, answers))
    ]
    return ChatCompletion(
        id=job.completion_id,
        created=job.created,
        model=job.request.model,
        choices=choices,
        usage=usage_body(runs, answers),
    )

"""The OpenAI chat adapter: a chat request becomes searches, a result a completion.

The route itself is `server.routes.chat`; this module holds the translation only.

- Model ids pick the strategy: `<model>` is plain sampling (one sample: best-of-N
  with n=1), `<model>@<strategy>` runs that registered strategy. The `search`
  extension object (same schema as `/v1/solve`) overrides the model's default.
- OpenAI's `n` asks for n choices; each choice is one independent search with its
  own budget (they run concurrently, so the engine batches them), and `usage` sums
  them all.
- Turns stay turns: leading system/developer messages become the system prompt,
  the last user message the question, everything between the history.
- Streaming is real: `search_progress` chunks arrive while the search runs (one per
  wave), then the chosen answer as content deltas, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from search_strategies.budget import Progress, ProgressSink
from search_strategies.protocols import ChatMessage, Problem
from search_strategies.registry import STRATEGIES
from server.errors import InvalidRequest, ModelNotFound, openai_error
from server.openai_format import (
    ChatJob,
    ChunkWriter,
    choice_answer,
    completion_body,
    content_pieces,
    usage_body,
)
from server.openai_schemas import ChatCompletion, ChatCompletionRequest
from server.request_log import mark_request
from server.schemas import SearchOptions
from server.service import SearchPlan, SolveService
from server.sse import KEEPALIVE, SSE_KEEPALIVE, next_event, sse

#: Plain sampling is best-of-N with one sample (no vote, no reward).
PLAIN_STRATEGY = "best_of_n"
PLAIN_FIELDS: dict[str, Any] = {"n": 1}
_STRATEGY_SEPARATOR = "@"


def model_ids(model_name: str, strategies: Iterable[str] = STRATEGIES) -> list[str]:
    """What `/v1/models` lists: plain sampling, then one id per strategy given."""
    return [model_name] + [f"{model_name}{_STRATEGY_SEPARATOR}{s}" for s in strategies]


def strategy_of_model(requested: str, model_name: str, listed: Sequence[str]) -> str | None:
    """The strategy a model id selects (None: plain sampling); 404 for unknown ids.

    Every registered strategy is accepted, listed or not: one this server cannot
    run is then a 400 from `SolveService.plan` saying why, not a puzzling 404.
    """
    base, _, strategy = requested.partition(_STRATEGY_SEPARATOR)
    if base == model_name and (not strategy or strategy in STRATEGIES):
        return strategy or None
    raise ModelNotFound(f"model {requested!r} does not exist; available: {', '.join(listed)}")


@dataclass(frozen=True)
class ChatLimits:
    max_messages: int
    max_choices: int


class ChatAdapter:
    """Translates between OpenAI chat bodies and the solve service."""

    def __init__(self, service: SolveService, limits: ChatLimits, keepalive_s: float = 0) -> None:
        self.service = service
        self.limits = limits
        #: Silence (s) after which a stream sends a comment; None: never.
        self.keepalive_s = keepalive_s if keepalive_s > 0 else None

    def model_ids(self) -> list[str]:
        """The ids `/v1/models` lists: only what this server can run."""
        return model_ids(self.service.policy.model_name, self.service.runnable_strategies())

    def prepare(self, body: object) -> ChatJob:
        """Validate everything (schema, limits, model, strategy fields) before any work."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        try:
            request = ChatCompletionRequest.model_validate(
                body, context={"limits": self.service.limits}
            )
        except ValidationError as error:
            raise InvalidRequest.from_validation(error) from None
        if len(request.messages) > self.limits.max_messages:
            raise InvalidRequest(
                f"messages: {len(request.messages)} messages is more than the server "
                f"maximum max_messages={self.limits.max_messages}",
                "messages",
            )
        if request.n > self.limits.max_choices:
            raise InvalidRequest(
                f"n: must be at most the server maximum max_choices={self.limits.max_choices}",
                "n",
            )
        model_strategy = strategy_of_model(
            request.model, self.service.policy.model_name, self.model_ids()
        )
        problem = problem_from(request, self.service.default_system_prompt)
        plans = [
            self._plan(request, model_strategy, problem, choice) for choice in range(request.n)
        ]
        return ChatJob(request, plans, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()))

    def _plan(
        self,
        request: ChatCompletionRequest,
        model_strategy: str | None,
        problem: Problem,
        choice: int,
    ) -> SearchPlan:
        search = request.search or SearchOptions()
        strategy = search.strategy or model_strategy or PLAIN_STRATEGY
        plain = search.strategy is None and model_strategy is None
        openai_fields = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "max_new_tokens": request.max_completion_tokens or request.max_tokens,
        }
        search_fields = search.strategy_fields()
        fields = {
            **(PLAIN_FIELDS if plain else {}),
            **{k: v for k, v in openai_fields.items() if v is not None},
            **search_fields,
        }
        if type(fields.get("seed")) is int:  # anything else: the strategy's model says 400
            fields["seed"] += choice  # n choices from one seed: reproducible yet distinct
        names = {key: f"search.{key}" for key in search_fields}
        names.setdefault(
            "max_new_tokens",
            "max_completion_tokens" if request.max_completion_tokens else "max_tokens",
        )
        names["strategy"] = "search.strategy" if search.strategy else "model"
        return self.service.plan(strategy, fields, search, problem, names)

    async def complete(self, job: ChatJob) -> ChatCompletion:
        runs = await asyncio.gather(*(self.service.run(plan) for plan in job.plans))
        return completion_body(job, list(runs))

    async def stream(self, job: ChatJob) -> AsyncIterator[str]:
        """SSE events: role, progress per wave, content deltas, finish, usage, [DONE],
        and a `: keepalive` comment whenever the search is silent for `keepalive_s`."""
        events: asyncio.Queue[tuple[int, Progress] | None] = asyncio.Queue()
        started = time.monotonic()
        chunk = ChunkWriter(job)

        def sink(i: int) -> ProgressSink:
            return lambda progress: events.put_nowait((i, progress))

        tasks = [
            asyncio.create_task(self.service.run(plan, sink(i))) for i, plan in enumerate(job.plans)
        ]
        all_done = asyncio.ensure_future(asyncio.gather(*tasks))
        all_done.add_done_callback(lambda _: events.put_nowait(None))
        try:
            for index in range(len(job.plans)):
                yield chunk.delta(index, {"role": "assistant", "content": ""})
            while (event := await next_event(events, self.keepalive_s)) is not None:
                if event is KEEPALIVE:
                    yield SSE_KEEPALIVE
                    continue
                index, progress = event
                yield chunk.progress(index, progress, job.plans[index], time.monotonic() - started)
            try:
                runs = await all_done
            except Exception as error:  # the stream has begun: errors travel as events
                yield sse(openai_error(error).body)
                return
            answers = [choice_answer(run, job.request.stop_strings()) for run in runs]
            for index, (text, _) in enumerate(answers):
                for piece in content_pieces(text):
                    yield chunk.delta(index, {"content": piece})
            for index, (_, finish) in enumerate(answers):
                yield chunk.finish(index, finish, runs[index])
            options = job.request.stream_options
            if options is not None and options.include_usage:
                yield chunk.usage(usage_body(runs, answers))
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:  # Starlette cancels the stream when the client leaves
            mark_request("client_disconnected", True)
            raise
        finally:
            for task in tasks:
                task.cancel()  # a client that left cancels its searches (engine aborts)
            await asyncio.gather(all_done, *tasks, return_exceptions=True)


def problem_from(request: ChatCompletionRequest, default_system_prompt: str) -> Problem:
    """Leading system turns → system prompt; last user turn → question; rest → history."""
    messages = list(request.messages)
    system: list[str] = []
    while messages and messages[0].role in ("system", "developer"):
        system.append(messages.pop(0).text())
    if not messages or messages[-1].role != "user":
        raise InvalidRequest("messages: the last message must have role 'user'", "messages")
    question = messages[-1].text()
    if not question.strip():
        raise InvalidRequest("messages: the last user message is empty", "messages")
    history = [
        ChatMessage("system" if m.role == "developer" else m.role, m.text()) for m in messages[:-1]
    ]
    return Problem(
        question=question,
        system_prompt="\n\n".join(system) if system else default_system_prompt,
        history=history,
    )

"""`POST /v1/chat/completions`: OpenAI chat, answered by search.

The route parses, holds a search slot and formats; `server.openai_api.ChatAdapter`
turns the chat body into searches and their results into a completion or a stream
(its module docstring has the rules: model ids, `n`, turns, streaming).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from server.disconnect import ClientDisconnected, cancel_on_disconnect, client_closed_response
from server.limits import run_in_slot
from server.openai_schemas import ChatCompletion
from server.routes.deps import chat_adapter, json_body, slots

router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, answered by search (see the module docstring)."""
    adapter = chat_adapter(request)
    search_slots = slots(request)
    job = adapter.prepare(await json_body(request))
    if not job.request.stream:
        try:
            completion = await run_in_slot(request, search_slots, lambda: adapter.complete(job))
        except ClientDisconnected:
            return client_closed_response()
        return JSONResponse(completion.model_dump())
    # The slot is taken before the stream starts (so a full queue is a plain 429)
    # and given back by the response however the stream ends.
    stack = AsyncExitStack()
    try:
        await cancel_on_disconnect(request, stack.enter_async_context(search_slots.hold()))
    except ClientDisconnected:
        return client_closed_response()
    return _SlotStreamingResponse(adapter.stream(job), stack.aclose)


class _SlotStreamingResponse(StreamingResponse):
    """A stream that gives its search slot back however the stream ends."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], Awaitable[None]]):
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()

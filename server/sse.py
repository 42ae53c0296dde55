"""Server-sent events, shared by the two streamed routes (chat and `/v1/solve`).

- `sse` writes one event; `SSE_KEEPALIVE` is the comment a silent stream sends.
- `next_event` waits for the search's next event, or says KEEPALIVE after a stretch
  of silence: a wave of a big search can take minutes on a CPU, and proxies close a
  connection that sends nothing for a while (nginx after 60 s by default).
- `stream_in_slot` takes a search slot before the stream starts (so a full queue is
  a plain 429) and gives it back however the stream ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from server.disconnect import ClientDisconnected, cancel_on_disconnect, client_closed_response
from server.limits import SearchSlots

#: Sent after a stretch of silence; SSE clients (the OpenAI SDK too) skip comments.
SSE_KEEPALIVE = ": keepalive\n\n"
#: What `next_event` returns when `keepalive_s` passed without an event.
KEEPALIVE = object()


def sse(payload: dict[str, Any], event: str | None = None) -> str:
    """One event: `data` is compact JSON; `event` names its type (None: a message)."""
    data = json.dumps(payload, separators=(",", ":"))
    return f"event: {event}\ndata: {data}\n\n" if event else f"data: {data}\n\n"


async def next_event(events: asyncio.Queue[Any], keepalive_s: float | None) -> Any:
    """The queue's next item, or KEEPALIVE after `keepalive_s` of silence (None: wait)."""
    try:
        return await asyncio.wait_for(events.get(), keepalive_s)
    except TimeoutError:  # nothing is lost: get() had not taken an item
        return KEEPALIVE


async def stream_in_slot(
    request: Request, slots: SearchSlots, content: Callable[[], AsyncIterator[str]]
) -> Response:
    """An event-stream response of `content()` that holds a search slot meanwhile."""
    stack = AsyncExitStack()
    try:
        await cancel_on_disconnect(request, stack.enter_async_context(slots.hold()))
    except ClientDisconnected:
        return client_closed_response()
    return _SlotStreamingResponse(content(), stack.aclose)


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

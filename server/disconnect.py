"""Cancel work whose client has gone away.

Starlette keeps running a handler after its client disconnects; for a search that
would burn engine time on an answer nobody reads. The search runs as a task next to
a watcher of the ASGI `http.disconnect` message, and the first to finish wins.
Cancelling the task reaches the engine: vLLM aborts cancelled requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready."""


def client_closed_response() -> Response:
    """What a cancelled request "answers" (nobody reads it): nginx's 499, for logs/metrics."""
    log.info("client disconnected; search cancelled")
    return Response(status_code=499)


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; cancel it and raise `ClientDisconnected` if the client leaves."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected()
    return task.result()

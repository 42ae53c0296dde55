"""Limits that protect the server as a whole: request body size and concurrent searches.

Per-field maximums (n, max_new_tokens, budget fields, ...) are checked where each
field is validated (`search_strategies.params.at_most_limit`); this module holds the
limits that are about the server's capacity rather than one field.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from starlette.requests import Request

from server.disconnect import cancel_on_disconnect
from server.errors import InvalidRequest, ServerBusy

T = TypeVar("T")


async def read_json_body(request: Request, max_bytes: int) -> object:
    """The request's JSON body, refusing (400) bodies over `max_bytes` without buffering them.

    The declared Content-Length is checked first; a chunked body is counted as it
    arrives, so a client cannot make the server hold more than the limit.
    """
    too_large = InvalidRequest(
        f"request body is larger than the server maximum max_body_bytes={max_bytes}"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None


class SearchSlots:
    """At most `max_active` searches run at once; at most `max_queued` wait, first come
    first served; a request beyond both is refused at once with a `Retry-After` hint.

    Refusing early keeps latency bounded under overload: an unbounded queue would
    accept work the server cannot finish before clients time out.
    """

    def __init__(self, max_active: int, max_queued: int) -> None:
        self.max_active = max_active
        self.max_queued = max_queued
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: Smoothed seconds a search holds a slot; drives the Retry-After estimate.
        self._mean_hold_s = 5.0

    @property
    def queued(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block (waiting in the queue if needed)."""
        await self._enter()
        started = time.monotonic()
        try:
            yield
        finally:
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * (time.monotonic() - started)
            self._leave()

    def retry_after_s(self) -> int:
        """Seconds until a place is likely to free up (at least 1)."""
        rounds = (self.queued + 1) / max(1, self.max_active)
        return max(1, min(120, math.ceil(self._mean_hold_s * rounds)))

    async def _enter(self) -> None:
        if self.max_active <= 0:  # no limit configured
            self.active += 1
            return
        if self.active < self.max_active and not self.queued:
            self.active += 1
            return
        if self.queued >= self.max_queued:
            raise ServerBusy(
                f"server busy: {self.active} searches running and {self.queued} queued "
                f"(max_concurrent_searches={self.max_active}, "
                f"max_queued_searches={self.max_queued}); retry later",
                self.retry_after_s(),
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `_leave` hands its slot straight to us (active unchanged)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._leave()  # the slot arrived as we were cancelled: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _leave(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


async def run_in_slot(request: Request, slots: SearchSlots, work: Callable[[], Awaitable[T]]) -> T:
    """Wait for a slot, then run `work()` in it; both are cancelled if the client leaves
    (raising `ClientDisconnected`), so an abandoned request never reaches the engine."""

    async def held() -> T:
        async with slots.hold():
            return await work()

    return await cancel_on_disconnect(request, held())

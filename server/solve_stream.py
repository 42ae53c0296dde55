"""`POST /v1/solve` with `"stream": true`: one search as server-sent events.

    event: wave     one per search wave:
                    {"wave": 3, "final": false, "nodes": [...], "best_score": 0.8,
                     "usage": {...}, "remaining": {"tokens": 96, "reward_calls": 1021,
                     "time_s": 590.2}, "elapsed_s": 4.2}
    event: result   the body a non-streamed `/v1/solve` returns
    event: error    {"error": {...}}: the search failed after the stream began
    : keepalive     a comment after `--sse-keepalive-s` of silence

`nodes` are the tree nodes the wave created or changed (the fields of the
response's `trace`: id, parent, text, num_tokens, score, chosen and each strategy's
own statistics: MCTS visits and value, particle weights). Folding every event's
nodes by id rebuilds the tree: after the search, one last `wave` with `"final":
true` carries what its end changed (a greedy completion, the final scores, the
chosen path), so the folded tree is exactly the result's trace. `remaining` is what
is left of each budget limit (null: unlimited).

A client that disconnects cancels the search, as on the other routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict
from typing import Any

from search_strategies.budget import Progress
from search_strategies.results import TraceNode
from server.errors import openai_error
from server.request_log import mark_request
from server.schemas import SolveRequest
from server.service import SearchPlan, SolveService, trace_node_out
from server.sse import KEEPALIVE, SSE_KEEPALIVE, next_event, sse


class TraceDelta:
    """The nodes that are new or changed since the last call, as the API writes them."""

    def __init__(self) -> None:
        self._sent: dict[int, dict[str, Any]] = {}

    def changes(self, nodes: Iterable[TraceNode]) -> list[dict[str, Any]]:
        changed = []
        for node in nodes:
            body = trace_node_out(node).model_dump()
            if self._sent.get(node.id) != body:
                self._sent[node.id] = body
                changed.append(body)
        return changed


def wave_event(
    progress: Progress | None, nodes: list[dict[str, Any]], elapsed_s: float, final: bool
) -> str:
    """One `wave` event (the final one has no progress of its own to report)."""
    body: dict[str, Any] = {"wave": None, "final": final, "nodes": nodes}
    if progress is not None:
        body.update(
            wave=progress.wave,
            best_score=progress.best_score,
            usage=progress.usage.as_dict(),
            remaining=asdict(progress.remaining) if progress.remaining else None,
        )
    body["elapsed_s"] = round(elapsed_s, 3)
    return sse(body, "wave")


async def solve_events(
    service: SolveService,
    request: SolveRequest,
    plan: SearchPlan,
    keepalive_s: float | None,
) -> AsyncIterator[str]:
    """The events of one search (see the module docstring); cancelled with the stream."""
    started = time.monotonic()
    events: asyncio.Queue[Progress | None] = asyncio.Queue()
    search = asyncio.create_task(service.run(plan, events.put_nowait, trace_progress=True))
    search.add_done_callback(lambda _: events.put_nowait(None))
    delta = TraceDelta()
    try:
        while (event := await next_event(events, keepalive_s)) is not None:
            if event is KEEPALIVE:
                yield SSE_KEEPALIVE
                continue
            nodes = delta.changes(event.trace or ())
            yield wave_event(event, nodes, time.monotonic() - started, final=False)
        try:
            run = await search
        except Exception as error:  # the stream has begun: errors travel as events
            yield sse(openai_error(error).body, "error")
            return
        final_nodes = delta.changes(run.result.trace or ())
        yield wave_event(None, final_nodes, time.monotonic() - started, final=True)
        yield sse(service.respond(request, run, started).model_dump(), "result")
    except asyncio.CancelledError:  # Starlette cancels the stream when the client leaves
        mark_request("client_disconnected", True)
        raise
    finally:
        search.cancel()  # a client that left cancels its search (the engine aborts)
        await asyncio.gather(search, return_exceptions=True)

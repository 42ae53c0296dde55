"""`POST /v1/solve`: one search, Ponder's own request and response schemas.

The service validates the body (`SolveService.parse`, 400 before any work), the
search waits for a slot (429 when the queue is full) and is cancelled if the
client leaves. With `"stream": true` the answer is server-sent events, one per
search wave and then the result (`server.solve_stream` has the format).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.disconnect import ClientDisconnected, client_closed_response
from server.limits import run_in_slot
from server.routes.deps import json_body, service, slots, sse_keepalive_s
from server.schemas import SolveResponse
from server.solve_stream import solve_events
from server.sse import stream_in_slot

router = APIRouter()


@router.post("/v1/solve", response_model=SolveResponse)
async def solve(request: Request) -> Response:
    solver = service(request)
    parsed = solver.parse(await json_body(request))
    if parsed.stream:
        plan = solver.plan_solve(parsed)  # a bad field is a plain 400, before the stream
        keepalive = sse_keepalive_s(request)
        return await stream_in_slot(
            request, slots(request), lambda: solve_events(solver, parsed, plan, keepalive)
        )
    try:
        started = time.monotonic()
        plan = solver.plan_solve(parsed)
        run = await run_in_slot(request, slots(request), lambda: solver.run(plan))
    except ClientDisconnected:
        return client_closed_response()
    return JSONResponse(solver.respond(parsed, run, started).model_dump())

"""`POST /v1/solve`: one search, Ponder's own request and response schemas.

The service validates the body (`SolveService.parse`, 400 before any work), the
search waits for a slot (429 when the queue is full) and is cancelled if the
client leaves.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.disconnect import ClientDisconnected, client_closed_response
from server.limits import run_in_slot
from server.routes.deps import json_body, service, slots
from server.schemas import SolveResponse

router = APIRouter()


@router.post("/v1/solve", response_model=SolveResponse)
async def solve(request: Request) -> Response:
    solver = service(request)
    parsed = solver.parse(await json_body(request))
    try:
        result = await run_in_slot(request, slots(request), lambda: solver.solve(parsed))
    except ClientDisconnected:
        return client_closed_response()
    return JSONResponse(result.model_dump())

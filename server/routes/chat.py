"""`POST /v1/chat/completions`: OpenAI chat, answered by search.

The route parses, holds a search slot and formats; `server.openai_api.ChatAdapter`
turns the chat body into searches and their results into a completion or a stream
(its module docstring has the rules: model ids, `n`, turns, streaming).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.disconnect import ClientDisconnected, client_closed_response
from server.limits import run_in_slot
from server.openai_schemas import ChatCompletion
from server.routes.deps import chat_adapter, json_body, slots
from server.sse import stream_in_slot

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
    return await stream_in_slot(request, search_slots, lambda: adapter.stream(job))

"""What the routes take from the running app: typed accessors over `app.state`.

`server.app.create_app` sets `slots`, `metrics`, `max_body_bytes` and
`sse_keepalive_s` when it builds
the app, and its lifespan sets `service`, `chat` and `rewards` once the policy and
the reward backends are up (requests are served only after that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from server.limits import read_json_body

if TYPE_CHECKING:
    from server.limits import SearchSlots
    from server.metrics import PonderMetrics
    from server.openai_api import ChatAdapter
    from server.rewards import Rewards
    from server.service import SolveService


def service(request: Request) -> SolveService:
    return request.app.state.service


def chat_adapter(request: Request) -> ChatAdapter:
    return request.app.state.chat


def rewards(request: Request) -> Rewards:
    return request.app.state.rewards


def slots(request: Request) -> SearchSlots:
    return request.app.state.slots


def metrics(request: Request) -> PonderMetrics:
    return request.app.state.metrics


def sse_keepalive_s(request: Request) -> float | None:
    return request.app.state.sse_keepalive_s


async def json_body(request: Request) -> object:
    """The request's JSON body, read under the server's `max_body_bytes` cap."""
    return await read_json_body(request, request.app.state.max_body_bytes)

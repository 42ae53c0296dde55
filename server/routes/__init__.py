"""The HTTP routes: one router module per route family, as in vLLM's entrypoints.

A route only parses the request, calls the service (or the chat adapter), and
formats the answer; the work happens in `server.service.SolveService` and the
OpenAI translation in `server.openai_api.ChatAdapter`. What a route needs from the
running app it takes from `app.state` through the accessors in `server.routes.deps`,
which `server.app` fills in.

    chat.py     POST /v1/chat/completions   (OpenAI chat, streamed or not)
    explorer.py GET  /                      (the search explorer page; not in the schema)
    health.py   GET  /health                (policy and reward backends)
    models.py   GET  /v1/models             (plain sampling and `<model>@<strategy>`)
    metrics.py  GET  /metrics               (Prometheus exposition; not in the schema)
    solve.py    POST /v1/solve              (Ponder's own search request, streamed or not)

A new route family is a module here with a `router`, listed in `ROUTERS`, and its
errors in `server.openapi.OPERATION_ERRORS` (`tests/test_openapi.py` checks that).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from server.routes import chat, explorer, health, metrics, models, solve

#: In this order in the app and in the OpenAPI document's `paths`.
ROUTERS: tuple[APIRouter, ...] = (
    chat.router,
    explorer.router,
    health.router,
    models.router,
    metrics.router,
    solve.router,
)


def include_routers(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)

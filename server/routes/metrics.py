"""`GET /metrics`: the Prometheus exposition (left out of the OpenAPI document).

Open without an API key unless `--metrics-require-key` (`server.app` decides which
paths are open).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from server.routes.deps import metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    body, content_type = metrics(request).exposition()
    return Response(body, media_type=content_type)

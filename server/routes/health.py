"""`GET /health`: 200 when the policy answers (status `degraded` if a reward backend
does not), 503 with status `unavailable` when the policy cannot. Behind vLLM's router,
`detail` says how many policy replicas the router sees healthy."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.policy.errors import PolicyUnavailable
from server.routes.deps import rewards, service
from server.schemas import HealthResponse

router = APIRouter()


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> JSONResponse:
    policy = service(request).policy
    try:
        note = await policy.check_health()
    except PolicyUnavailable as error:
        body = HealthResponse(status="unavailable", model=policy.model_name, detail=str(error))
        return JSONResponse(body.model_dump(), status_code=503)
    states = await rewards(request).health()
    degraded = any(state != "ok" for state in states.values())
    body = HealthResponse(
        status="degraded" if degraded else "ok",
        model=policy.model_name,
        detail=note,
        running_requests=policy.running_requests(),
        rewards=states,
    )
    return JSONResponse(body.model_dump())

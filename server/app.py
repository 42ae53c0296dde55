"""The FastAPI application: lifespan (engine up and down), routes, error handlers.

Routes stay thin; the work happens in `SolveService`.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from server.disconnect import ClientDisconnected, cancel_on_disconnect
from server.errors import InvalidRequest, install_error_handlers
from server.policy.errors import PolicyUnavailable
from server.rewards import open_rewards
from server.schemas import HealthResponse, ModelCard, ModelList, SolveRequest, SolveResponse
from server.service import PolicyBackend, SolveService
from server.settings import Settings

log = logging.getLogger(__name__)

PolicyFactory = Callable[[Settings], Awaitable[PolicyBackend]]


async def open_policy(settings: Settings) -> PolicyBackend:
    """Start the configured policy: a remote server, or vLLM in this process."""
    if settings.policy_url:
        from server.policy.remote import RemotePolicy

        return await RemotePolicy.connect(
            settings.policy_url, settings.served_model_name, settings.remote_timeout_s
        )
    from server.model_prep import prepare_embedded_model
    from server.policy.vllm_engine import EngineOptions, VLLMPolicy

    model = settings.policy or str(prepare_embedded_model(settings.cache_dir))
    return VLLMPolicy.start(
        EngineOptions.from_settings(
            settings, model, settings.model_name, settings.gpu_memory_utilization
        )
    )


def create_app(settings: Settings, policy_factory: PolicyFactory = open_policy) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policy = await policy_factory(settings)
        try:
            rewards = await open_rewards(settings, policy)
        except BaseException:
            await policy.close()
            raise
        app.state.service = SolveService(
            policy, settings.limits, settings.default_system_prompt, rewards.clients
        )
        log.info("policy %s ready; rewards: %s", policy.model_name, list(rewards.clients))
        try:
            yield
        finally:
            log.info("shutting down rewards and policy %s", policy.model_name)
            await rewards.close()
            await policy.close()

    app = FastAPI(title="Ponder", summary="Inference-time search server", lifespan=lifespan)
    install_error_handlers(app)

    def service(request: Request) -> SolveService:
        return request.app.state.service

    @app.get("/health", response_model=HealthResponse)
    async def health(request: Request) -> JSONResponse:
        policy = service(request).policy
        try:
            await policy.check_health()
        except PolicyUnavailable as error:
            body = HealthResponse(status="unavailable", model=policy.model_name, detail=str(error))
            return JSONResponse(body.model_dump(), status_code=503)
        body = HealthResponse(
            status="ok", model=policy.model_name, running_requests=policy.running_requests()
        )
        return JSONResponse(body.model_dump())

    @app.get("/v1/models", response_model=ModelList)
    async def models(request: Request) -> ModelList:
        return ModelList(data=[ModelCard(id=service(request).policy.model_name)])

    @app.post(
        "/v1/solve",
        response_model=SolveResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SolveRequest.model_json_schema()}},
            }
        },
    )
    async def solve(request: Request) -> Response:
        solver = service(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise InvalidRequest("request body is not valid JSON") from None
        parsed = solver.parse(body)
        try:
            result = await cancel_on_disconnect(request, solver.solve(parsed))
        except ClientDisconnected:
            log.info("client disconnected; search cancelled")
            return Response(status_code=499)
        return JSONResponse(result.model_dump())

    return app

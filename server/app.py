"""The FastAPI application: lifespan (engine up and down), routes, error handlers.

Routes stay thin; the work happens in `SolveService`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from server.auth import ApiKeyMiddleware, load_api_keys
from server.disconnect import ClientDisconnected, client_closed_response
from server.errors import install_error_handlers
from server.limits import SearchSlots, read_json_body, run_in_slot
from server.metrics import PonderMetrics
from server.openai_api import ChatAdapter, ChatLimits
from server.openai_api import router as openai_router
from server.openapi import ServerFacts, install_openapi
from server.policy.errors import PolicyUnavailable
from server.request_log import RequestLogMiddleware, configure_access_log, note_search
from server.rewards import open_rewards
from server.schemas import HealthResponse, ModelCard, ModelList, SolveResponse
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
    metrics = PonderMetrics()
    slots = SearchSlots(settings.max_concurrent_searches, settings.max_queued_searches)
    metrics.watch_slots(slots)
    api_keys = load_api_keys(settings.api_key, settings.api_key_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policy = await policy_factory(settings)
        try:
            rewards = await open_rewards(settings, policy)
        except BaseException:
            await policy.close()
            raise
        app.state.service = SolveService(
            policy,
            settings.limits,
            settings.default_system_prompt,
            rewards.clients,
            observers=(metrics.observe_search, note_search),
        )
        app.state.rewards = rewards
        app.state.chat = ChatAdapter(
            app.state.service, ChatLimits(settings.max_messages, settings.max_choices),
            keepalive_s=settings.sse_keepalive_s,
        )
        log.info("policy %s ready; rewards: %s", policy.model_name, list(rewards.clients))
        try:
            yield
        finally:
            log.info("shutting down rewards and policy %s", policy.model_name)
            await rewards.close()
            await policy.close()

    app = FastAPI(title="Ponder", summary="Inference-time search server", lifespan=lifespan)
    app.state.slots = slots
    app.state.max_body_bytes = settings.max_body_bytes
    install_error_handlers(app)
    app.include_router(openai_router)
    open_paths = {"/health"} if settings.metrics_require_key else {"/health", "/metrics"}
    if api_keys:
        app.add_middleware(ApiKeyMiddleware, keys=api_keys, open_paths=open_paths)
    install_openapi(app, ServerFacts(
        limits=settings.limits,
        max_messages=settings.max_messages,
        max_choices=settings.max_choices,
        api_key=bool(api_keys),
        open_paths=frozenset(open_paths),
    ))
    app.add_middleware(RequestLogMiddleware, metrics=metrics)  # outermost: logs 401s too
    configure_access_log()

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
        rewards = await request.app.state.rewards.health()
        degraded = any(state != "ok" for state in rewards.values())
        body = HealthResponse(
            status="degraded" if degraded else "ok",
            model=policy.model_name,
            running_requests=policy.running_requests(),
            rewards=rewards,
        )
        return JSONResponse(body.model_dump())

    @app.get("/v1/models", response_model=ModelList)
    async def models(request: Request) -> ModelList:
        """Plain sampling and one id per strategy it can run (`<model>@<strategy>`)."""
        chat: ChatAdapter = request.app.state.chat
        return ModelList(data=[ModelCard(id=name) for name in chat.model_ids()])

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/v1/solve", response_model=SolveResponse)
    async def solve(request: Request) -> Response:
        solver = service(request)
        parsed = solver.parse(await read_json_body(request, settings.max_body_bytes))

        try:
            result = await run_in_slot(request, slots, lambda: solver.solve(parsed))
        except ClientDisconnected:
            return client_closed_response()
        return JSONResponse(result.model_dump())

    return app

"""The FastAPI application: a thin `create_app` that wires the pieces together.

- the lifespan starts the policy and the reward backends, and builds the service and
  the chat adapter the routes use (`app.state`; read through `server.routes.deps`);
- the routes are one router module per route family (`server.routes`), each only
  parsing, calling the service or adapter, and formatting;
- errors are mapped in one place (`server.errors`), the OpenAPI document is built in
  `server.openapi`, and auth and request logs are middleware.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from search_strategies.auto_policy import AutoPolicy
from server.auth import ApiKeyMiddleware, load_api_keys
from server.auto_policy import load_auto_policy
from server.errors import install_error_handlers
from server.limits import SearchSlots
from server.metrics import PonderMetrics
from server.openai_api import ChatAdapter, ChatLimits
from server.openapi import ServerFacts, install_openapi
from server.request_log import RequestLogMiddleware, configure_access_log, note_search
from server.rewards import open_rewards
from server.routes import include_routers
from server.routes.explorer import EXPLORER_PATHS
from server.service import PolicyBackend, SolveService
from server.settings import Settings

log = logging.getLogger(__name__)

PolicyFactory = Callable[[Settings], Awaitable[PolicyBackend]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


async def open_policy(settings: Settings) -> PolicyBackend:
    """Start the configured policy: a remote server, or vLLM in this process."""
    if settings.policy_url:
        from server.policy.remote import RemotePolicy

        return await RemotePolicy.connect(
            settings.policy_url,
            settings.served_model_name,
            settings.remote_timeout_s,
            session_header=settings.policy_session_header or None,
        )
    from server.model_prep import prepare_embedded_model
    from server.policy.vllm_engine import EngineOptions, VLLMPolicy

    model = settings.policy or str(prepare_embedded_model(settings.cache_dir))
    return VLLMPolicy.start(
        EngineOptions.from_settings(
            settings, model, settings.model_name, settings.gpu_memory_utilization
        )
    )


def serving_lifespan(
    settings: Settings,
    policy_factory: PolicyFactory,
    metrics: PonderMetrics,
    auto_policy: AutoPolicy | None = None,
) -> Lifespan:
    """Policy and rewards up before the first request, down after the last; meanwhile
    `app.state` holds the service, the chat adapter and the rewards."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policy = await policy_factory(settings)
        metrics.watch_policy(policy)
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
            auto_policy=auto_policy,
        )
        app.state.rewards = rewards
        app.state.chat = ChatAdapter(
            app.state.service,
            ChatLimits(settings.max_messages, settings.max_choices),
            keepalive_s=settings.sse_keepalive_s,
        )
        log.info("policy %s ready; rewards: %s", policy.model_name, list(rewards.clients))
        try:
            yield
        finally:
            log.info("shutting down rewards and policy %s", policy.model_name)
            await rewards.close()
            await policy.close()

    return lifespan


def create_app(settings: Settings, policy_factory: PolicyFactory = open_policy) -> FastAPI:
    metrics = PonderMetrics()
    slots = SearchSlots(settings.max_concurrent_searches, settings.max_queued_searches)
    metrics.watch_slots(slots)
    api_keys = load_api_keys(settings.api_key, settings.api_key_file)

    app = FastAPI(
        title="Ponder",
        summary="Inference-time search server",
        lifespan=serving_lifespan(settings, policy_factory, metrics, load_auto_policy(settings)),
    )
    app.state.slots = slots
    app.state.metrics = metrics
    app.state.max_body_bytes = settings.max_body_bytes
    #: Silence (s) after which an event stream sends a comment; None: never.
    app.state.sse_keepalive_s = settings.sse_keepalive_s if settings.sse_keepalive_s > 0 else None
    install_error_handlers(app)
    include_routers(app)
    open_paths = {"/health", *EXPLORER_PATHS}
    if not settings.metrics_require_key:
        open_paths.add("/metrics")
    if api_keys:
        app.add_middleware(ApiKeyMiddleware, keys=api_keys, open_paths=open_paths)
    install_openapi(
        app,
        ServerFacts(
            limits=settings.limits,
            max_messages=settings.max_messages,
            max_choices=settings.max_choices,
            api_key=bool(api_keys),
            open_paths=frozenset(open_paths),
        ),
    )
    app.add_middleware(RequestLogMiddleware, metrics=metrics)  # outermost: logs 401s too
    configure_access_log()
    return app

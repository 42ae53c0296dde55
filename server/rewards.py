"""Builds the reward clients a server offers from its settings, and shuts them down.

Every reward is built by its kind's row in `reward_clients.registry.KINDS`: the
weight-free ones `--reward` lists by name, the named ones it defines
(`--reward NAME=KIND[:MODEL|URL]`, as many as wanted), and the one the older flags
`--prm`/`--prm-url` with `--prm-kind` define, named `prm`. A learned PRM runs in a
vLLM engine of its own in this process (a MODEL) or in a remote `vllm serve` (a URL);
what is opened here is registered for the lifespan to close and for /health to
check under the reward's name, so no engine process outlives the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reward_clients.learned_prm import PRMBackend
from reward_clients.registry import (
    KINDS,
    ModelSource,
    RewardDef,
    RewardSpec,
    open_reward_clients,
    parse_reward_spec,
)
from search_strategies.protocols import ChatMessage, Generation, Policy, SamplingConfig
from search_strategies.reward import RewardModel, RewardUnavailable
from server.policy.errors import PolicyUnavailable
from server.settings import Settings

if TYPE_CHECKING:  # imported where used: neither vLLM nor the service at import time
    from server.policy.vllm_engine import EngineOptions
    from server.service import PolicyBackend

log = logging.getLogger(__name__)

#: The name of the reward `--prm`/`--prm-url`/`--prm-kind` define.
PRM_NAME = "prm"
#: What `--prm-kind` accepts: every kind of the table.
PRM_KINDS = tuple(KINDS)
#: What an unset `--reward` offers: weight-free, cheap, and the best of the rewards
#: the embedded model can use (docs/benchmarks.md, "Which reward").
DEFAULT_REWARD = "arithmetic"


def prm_kind(settings: Settings) -> str | None:
    """The kind of the `prm` reward the `--prm*` flags define, or None without one.

    Raises ValueError for an unknown kind, a kind that needs a model without one, or
    one that takes none with one, so the CLI can refuse before any engine starts.
    """
    has_model = bool(settings.prm or settings.prm_url)
    kind = settings.prm_kind or ("qwen" if has_model else "")
    if not kind:
        return None
    if kind not in KINDS:
        raise ValueError(f"--prm-kind: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if KINDS[kind].model == "required" and not has_model:
        raise ValueError(f"--prm-kind {kind} needs --prm MODEL or --prm-url URL")
    if KINDS[kind].model == "none" and has_model:
        raise ValueError(f"--prm-kind {kind} takes no model: drop --prm/--prm-url")
    return kind


def prm_definition(settings: Settings) -> RewardDef | None:
    """The `prm` reward of the `--prm*` flags as a definition, or None."""
    kind = prm_kind(settings)
    if kind is None:
        return None
    if not (settings.prm or settings.prm_url):
        return RewardDef(PRM_NAME, kind)
    # With --prm-url, --prm is the remote's served model name.
    return RewardDef(PRM_NAME, kind, ModelSource(settings.prm, settings.prm_url))


def reward_spec(settings: Settings) -> str:
    """The `--reward` value in force: the flag's, or the default when it is unset.

    Unset, a server offers the arithmetic verifier, behind the PRM when one is
    configured (whoever starts a server with a learned PRM means it to be used).
    """
    if settings.reward is not None:
        return settings.reward
    if prm_kind(settings):
        return f"{PRM_NAME},{DEFAULT_REWARD}"
    return DEFAULT_REWARD


def validate_reward_settings(settings: Settings) -> RewardSpec:
    """Everything about rewards that can be checked before an engine starts."""
    extra = (PRM_NAME,) if prm_kind(settings) else ()
    return parse_reward_spec(reward_spec(settings), extra)


#: A closer or a health check: async, no arguments, raises on failure.
AsyncAction = Callable[[], Awaitable[object]]  # what it returns is ignored
#: A health probe must answer well before an orchestrator's own probe timeout, even
#: when a remote PRM hangs (its call timeout, `--prm-timeout-s`, may be a minute).
HEALTH_CHECK_TIMEOUT_S = 5.0


@dataclass
class Rewards:
    """The configured clients (default first), how to check and how to release them."""

    clients: dict[str, RewardModel]
    closers: list[AsyncAction] = field(default_factory=list)
    #: Per reward with a backend of its own (a learned PRM, a judge model), by name:
    #: a check that raises when the backend is down. Rewards running on the policy
    #: are checked with it.
    health_checks: dict[str, AsyncAction] = field(default_factory=dict)

    async def health(self) -> dict[str, str]:
        """Every reward with a backend of its own: "ok" or "unavailable: why".

        The backends are asked at once, so a probe waits for the slowest one only.
        """
        names = list(self.health_checks)
        states = await asyncio.gather(*(self._state(self.health_checks[n]) for n in names))
        return dict(zip(names, states))

    @staticmethod
    async def _state(check: AsyncAction) -> str:
        try:
            await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"unavailable: no answer within {HEALTH_CHECK_TIMEOUT_S:g} s"
        except Exception as error:  # any failure of a probe means "not usable"
            return f"unavailable: {error}"
        return "ok"

    async def close(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:  # one failing close must not keep the others open
                log.exception("closing a reward backend failed")


async def open_rewards(settings: Settings, policy: Policy) -> Rewards:
    """Start or connect the configured reward backends (all of them, or none)."""
    opened = Rewards({})
    legacy = prm_definition(settings)
    try:
        opened.clients = await open_reward_clients(
            reward_spec(settings),
            _ServerContext(settings, policy, opened),
            {PRM_NAME: legacy} if legacy else None,
        )
    except BaseException:
        await opened.close()
        raise
    return opened


def start_prm_backend(
    settings: Settings, name: str, source: ModelSource, pooling: bool
) -> PRMBackend:
    """A remote PRM (`source.url`) or a PRM engine in this process (`source.model`).

    Module-level so tests can put fake backends in its place.
    """
    if source.url:
        from server.prm.remote import RemotePRMBackend

        return RemotePRMBackend(source.url, source.model, settings.prm_timeout_s, name)
    from server.prm.vllm_local import LocalPRMBackend

    assert source.model is not None
    return LocalPRMBackend.start(_engine_options(settings, source.model, name), pooling, name)


async def start_judge(settings: Settings, name: str, source: ModelSource) -> PolicyBackend:
    """The model a self-judge with a model of its own asks: a remote server or an engine."""
    if source.url:
        from server.policy.remote import RemotePolicy

        base = source.url.rstrip("/").removesuffix("/v1") + "/v1"
        return await RemotePolicy.connect(base, source.model, settings.prm_timeout_s)
    from server.policy.vllm_engine import VLLMPolicy

    assert source.model is not None
    return VLLMPolicy.start(_engine_options(settings, source.model, name))


def _engine_options(settings: Settings, model: str, name: str) -> EngineOptions:
    from server.policy.vllm_engine import EngineOptions

    return EngineOptions.from_settings(settings, model, name, settings.prm_gpu_memory_utilization)


@dataclass
class _ServerContext:
    """The `RewardContext` of a server: backends it opens are closed and checked."""

    settings: Settings
    policy: Policy
    opened: Rewards

    def prm_backend(self, name: str, source: ModelSource, pooling: bool) -> PRMBackend:
        backend = start_prm_backend(self.settings, name, source, pooling)
        self.opened.closers.append(backend.close)
        self.opened.health_checks[name] = backend.check_health
        return backend

    async def judge_policy(self, name: str, source: ModelSource) -> Policy:
        judge = await start_judge(self.settings, name, source)
        self.opened.closers.append(judge.close)
        self.opened.health_checks[name] = judge.check_health
        return _JudgeAsReward(judge, name)


class _JudgeAsReward:
    """A judge policy whose failures read as reward failures (503 naming the reward)."""

    def __init__(self, policy: Policy, name: str) -> None:
        self._policy = policy
        self._name = name

    @property
    def model_name(self) -> str:
        return self._policy.model_name

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        try:
            return await self._policy.encode_chat(messages)
        except PolicyUnavailable as error:
            raise RewardUnavailable(f"{self._name} (self-judge): {error}") from error

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        try:
            return await self._policy.generate(prompts, params)
        except PolicyUnavailable as error:
            raise RewardUnavailable(f"{self._name} (self-judge): {error}") from error

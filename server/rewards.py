"""Builds the reward clients a server offers from its settings, and shuts them down.

`--reward` names clients that need no weights of their own (unset: the arithmetic
verifier, so a default server can run every strategy it lists); `--prm`/`--prm-url`
with `--prm-kind` adds one more, named `prm`, which may run a second vLLM engine
in this process. The lifespan closes what was opened here, so no engine process
outlives the server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.combinators import Renamed
from reward_clients.learned_prm import PRMBackend, QwenPRM, TokenLogitPRM
from reward_clients.registry import build_rewards, parse_reward_spec
from reward_clients.self_judge import SelfJudge
from search_strategies.protocols import ChatMessage, Generation, Policy, SamplingConfig
from search_strategies.reward import RewardModel, RewardUnavailable
from server.policy.errors import PolicyUnavailable
from server.settings import Settings

log = logging.getLogger(__name__)

PRM_NAME = "prm"
PRM_KINDS = ("qwen", "math-shepherd", "rlhflow", "self-judge", "arithmetic")
#: Kinds that need a model of their own (in-process or remote).
_LEARNED = ("qwen", "math-shepherd", "rlhflow")
#: What an unset `--reward` offers: weight-free, cheap, and the best of the rewards
#: the embedded model can use (README "Which reward").
DEFAULT_REWARD = "arithmetic"


def prm_kind(settings: Settings) -> str | None:
    """The configured PRM kind, or None when no `prm` reward is configured.

    Raises ValueError for an unknown kind or a learned kind without a model, so the
    CLI can refuse before any engine starts.
    """
    kind = settings.prm_kind or ("qwen" if settings.prm or settings.prm_url else "")
    if not kind:
        return None
    if kind not in PRM_KINDS:
        raise ValueError(f"--prm-kind: unknown kind {kind!r}; choose one of {', '.join(PRM_KINDS)}")
    if kind in _LEARNED and not (settings.prm or settings.prm_url):
        raise ValueError(f"--prm-kind {kind} needs --prm MODEL or --prm-url URL")
    if kind == "arithmetic" and (settings.prm or settings.prm_url):
        raise ValueError("--prm-kind arithmetic takes no model: drop --prm/--prm-url")
    return kind


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


def validate_reward_settings(settings: Settings) -> None:
    """Everything about rewards that can be checked before an engine starts."""
    extra = (PRM_NAME,) if prm_kind(settings) else ()
    parse_reward_spec(reward_spec(settings), extra)


#: A closer or a health check: async, no arguments, raises on failure.
AsyncAction = Callable[[], Awaitable[None]]
#: A health probe must answer well before an orchestrator's own probe timeout, even
#: when a remote PRM hangs (its call timeout, `--prm-timeout-s`, may be a minute).
HEALTH_CHECK_TIMEOUT_S = 5.0


@dataclass
class Rewards:
    """The configured clients (default first), how to check and how to release them."""

    clients: dict[str, RewardModel]
    closers: list[AsyncAction] = field(default_factory=list)
    #: Per client with a backend of its own (the `prm`): a check that raises when
    #: the backend is down. Clients running on the policy are checked with it.
    health_checks: dict[str, AsyncAction] = field(default_factory=dict)

    async def health(self) -> dict[str, str]:
        """"ok" or "unavailable: why" for every client with a backend of its own."""
        states = {}
        for name, check in self.health_checks.items():
            try:
                await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT_S)
                states[name] = "ok"
            except TimeoutError:
                states[name] = f"unavailable: no answer within {HEALTH_CHECK_TIMEOUT_S:g} s"
            except Exception as error:  # any failure of a probe means "not usable"
                states[name] = f"unavailable: {error}"
        return states

    async def close(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:  # one failing close must not keep the others open
                log.exception("closing a reward backend failed")


async def open_rewards(settings: Settings, policy: Policy) -> Rewards:
    """Start or connect the configured reward backends."""
    opened = Rewards({})
    extra: dict[str, RewardModel] = {}
    kind = prm_kind(settings)
    if kind is not None:
        extra[PRM_NAME] = await _open_prm(settings, kind, policy, opened)
    try:
        opened.clients = build_rewards(reward_spec(settings), policy, extra)
    except BaseException:
        await opened.close()
        raise
    return opened


async def _open_prm(settings: Settings, kind: str, policy: Policy, opened: Rewards) -> RewardModel:
    """The `prm` client; what it opens is registered in `opened` (close, health)."""
    if kind == "arithmetic":
        return Renamed(ArithmeticVerifier(), PRM_NAME)
    if kind == "self-judge":
        judge = await _judge_policy(settings, policy, opened)
        return Renamed(SelfJudge(judge), PRM_NAME)
    backend = _prm_backend(settings, pooling=kind == "qwen")
    opened.closers.append(backend.close)
    opened.health_checks[PRM_NAME] = backend.check_health
    if kind == "qwen":
        return QwenPRM(backend, PRM_NAME)
    return TokenLogitPRM(backend, "math-shepherd" if kind == "math-shepherd" else "rlhflow",
                         PRM_NAME)


def _prm_backend(settings: Settings, pooling: bool) -> PRMBackend:
    if settings.prm_url:
        from server.prm.remote import RemotePRMBackend

        return RemotePRMBackend(settings.prm_url, settings.prm, settings.prm_timeout_s, PRM_NAME)
    from server.prm.vllm_local import LocalPRMBackend

    assert settings.prm is not None
    return LocalPRMBackend.start(_prm_engine_options(settings), pooling, PRM_NAME)


def _prm_engine_options(settings: Settings):  # -> EngineOptions (vLLM import deferred)
    from server.policy.vllm_engine import EngineOptions

    assert settings.prm is not None
    return EngineOptions.from_settings(
        settings, settings.prm, PRM_NAME, settings.prm_gpu_memory_utilization
    )


async def _judge_policy(settings: Settings, policy: Policy, opened: Rewards) -> Policy:
    """The model a self-judge PRM asks: its own engine or server, else the policy."""
    if settings.prm_url:
        from server.policy.remote import RemotePolicy

        base = settings.prm_url.rstrip("/").removesuffix("/v1") + "/v1"
        judge = await RemotePolicy.connect(base, settings.prm, settings.prm_timeout_s)
    elif settings.prm:
        from server.policy.vllm_engine import VLLMPolicy

        judge = VLLMPolicy.start(_prm_engine_options(settings))
    else:
        return policy
    opened.closers.append(judge.close)
    opened.health_checks[PRM_NAME] = judge.check_health
    return _JudgeAsReward(judge)


class _JudgeAsReward:
    """A judge policy whose failures read as reward failures (503 naming the PRM)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    @property
    def model_name(self) -> str:
        return self._policy.model_name

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        try:
            return await self._policy.encode_chat(messages)
        except PolicyUnavailable as error:
            raise RewardUnavailable(f"{PRM_NAME} (self-judge): {error}") from error

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        try:
            return await self._policy.generate(prompts, params)
        except PolicyUnavailable as error:
            raise RewardUnavailable(f"{PRM_NAME} (self-judge): {error}") from error

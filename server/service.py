"""Turns a validated solve request into a strategy run and its HTTP answer.

This is the one place that wires a request to the domain core: it resolves the
strategy, validates its parameters against the server limits, opens a budget, and
meters the policy so every engine call is charged.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Protocol

from pydantic import ValidationError

from reward_clients.combinators import ContinueWithoutReward
from search_strategies.budget import Budget, BudgetLimits, MeteredPolicy, MeteredReward
from search_strategies.params import ServerLimits, StrategyParams
from search_strategies.protocols import Policy, Problem
from search_strategies.registry import STRATEGIES
from search_strategies.results import SearchResult
from search_strategies.reward import RewardModel
from server.errors import InvalidRequest
from server.schemas import (
    CandidateOut,
    SolveRequest,
    SolveResponse,
    TimingOut,
    TraceNodeOut,
    UsageOut,
)


class PolicyBackend(Policy, Protocol):
    """A policy the server owns: it can be health-checked and closed."""

    async def check_health(self) -> None: ...

    def running_requests(self) -> int: ...

    async def close(self) -> None: ...


class SolveService:
    """Runs searches for `/v1/solve` against one policy backend."""

    def __init__(
        self,
        policy: PolicyBackend,
        limits: ServerLimits,
        default_system_prompt: str,
        rewards: dict[str, RewardModel] | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.default_system_prompt = default_system_prompt
        #: Configured reward clients; the first is the default.
        self.rewards = dict(rewards or {})

    def parse(self, body: object) -> SolveRequest:
        """Validate a raw JSON body, checking every field against the server limits."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        try:
            return SolveRequest.model_validate(body, context={"limits": self.limits})
        except ValidationError as error:
            raise InvalidRequest.from_validation(error) from None

    async def solve(self, request: SolveRequest) -> SolveResponse:
        started = time.monotonic()
        spec = STRATEGIES.get(request.strategy)
        if spec is None:
            names = ", ".join(sorted(STRATEGIES))
            raise InvalidRequest(
                f"strategy: unknown strategy {request.strategy!r}; choose one of {names}",
                "strategy",
            )
        try:
            params = spec.params_model.model_validate(
                request.strategy_fields(), context={"limits": self.limits}
            )
        except ValidationError as error:
            raise InvalidRequest.from_validation(error) from None

        reward = self._reward_for(request, params)
        budget = Budget(
            BudgetLimits(
                max_tokens=request.budget.max_tokens or self.limits.max_tokens,
                max_reward_calls=request.budget.max_reward_calls
                or self.limits.max_reward_calls,
                time_limit_s=request.budget.time_limit_s or self.limits.max_time_limit_s,
            )
        )
        problem = Problem(
            question=request.question,
            system_prompt=request.system_prompt or self.default_system_prompt,
        )
        # Per request: a failed backend is remembered for this search only.
        fallback = (
            ContinueWithoutReward(reward)
            if reward is not None and request.reward_fallback == "none"
            else None
        )
        search_started = time.monotonic()
        result = await spec.run(
            problem,
            params,
            MeteredPolicy(self.policy, budget),
            MeteredReward(fallback or reward, budget) if reward else None,
            budget,
        )
        finished = time.monotonic()
        response = self._response(
            request,
            reward.name if reward else None,
            result,
            TimingOut(total_s=finished - started, search_s=finished - search_started),
        )
        if fallback is not None and fallback.failure is not None:
            response.reward_error = (
                f"{fallback.failure}; the search continued without reward (reward_fallback=none)"
            )
        return response

    def _reward_for(self, request: SolveRequest, params: StrategyParams) -> RewardModel | None:
        """The reward client the search will call: the requested one, else the default.

        A named reward is checked even when the parameters do not use it, so a typo
        is a 400 rather than silently ignored.
        """
        if request.reward is not None and request.reward not in self.rewards:
            configured = ", ".join(self.rewards) or "none (start the server with --reward)"
            raise InvalidRequest(
                f"reward: {request.reward!r} is not configured; configured: {configured}",
                "reward",
            )
        if not params.needs_reward:
            return None
        if not self.rewards:
            field = params.reward_field
            value = request.strategy if field == "strategy" else getattr(params, field)
            raise InvalidRequest(
                f"{field}: {value!r} needs a reward model and the server has none; "
                "start it with --reward arithmetic",
                field,
            )
        return self.rewards[request.reward or next(iter(self.rewards))]

    def _response(
        self,
        request: SolveRequest,
        reward_name: str | None,
        result: SearchResult,
        timing: TimingOut,
    ) -> SolveResponse:
        return SolveResponse(
            id=f"solve-{uuid.uuid4().hex}",
            model=self.policy.model_name,
            strategy=request.strategy,
            reward=reward_name,
            answer=result.answer,
            answer_text=result.chosen.text if result.chosen else None,
            candidates=[
                CandidateOut(
                    text=c.text,
                    answer=c.answer,
                    mean_logprob=c.mean_logprob if math.isfinite(c.mean_logprob) else None,
                    finish_reason=c.finish_reason,
                    num_tokens=c.num_tokens,
                    score=c.score,
                )
                for c in result.candidates
            ],
            usage=UsageOut(**result.usage.as_dict()),
            timing=timing,
            stopped_reason=result.stopped_reason.value,
            trace=(
                [TraceNodeOut(**vars(node)) for node in result.trace]
                if request.return_trace and result.trace is not None
                else None
            ),
        )

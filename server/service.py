"""Turns a validated solve request into a strategy run and its HTTP answer.

This is the one place that wires a request to the domain core, for `/v1/solve` and
the OpenAI chat route alike: `plan` resolves the strategy and reward and validates
the parameters against the server limits; `run` opens a budget (with an optional
progress sink for streaming), meters the policy so every engine call is charged, and
tells the observers (metrics, request log) what the search spent.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from reward_clients.combinators import ContinueWithoutReward
from search_strategies.auto_policy import AutoPolicy
from search_strategies.budget import (
    Budget,
    BudgetLimits,
    MeteredPolicy,
    MeteredReward,
    ProgressSink,
)
from search_strategies.context import SearchContext
from search_strategies.params import ServerLimits, StrategyParams
from search_strategies.protocols import Policy, Problem
from search_strategies.registry import STRATEGIES, StrategySpec
from search_strategies.results import SearchResult, TraceNode
from search_strategies.reward import RewardModel, with_reward_aggregation
from server.errors import InvalidRequest
from server.policy.session import search_session
from server.schemas import (
    CandidateOut,
    SearchOptions,
    SolveRequest,
    SolveResponse,
    TimingOut,
    TraceNodeOut,
    UsageOut,
)


class PolicyBackend(Policy, Protocol):
    """A policy the server owns: it can be health-checked and closed."""

    async def check_health(self) -> str | None:
        """Raise `PolicyUnavailable` if it cannot serve; else an optional note on its
        state that /health shows (a router's view of its replicas)."""
        ...

    def running_requests(self) -> int: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SearchPlan:
    """A validated search, ready to run: what `/v1/solve` and chat both build."""

    strategy: str
    spec: StrategySpec
    params: StrategyParams
    reward: RewardModel | None
    limits: BudgetLimits
    problem: Problem
    #: With `reward_fallback=none`: the reward wrapped so that a failing backend lets
    #: the search go on unscored (per plan, so a failure is remembered for it alone).
    fallback: ContinueWithoutReward | None = None


@dataclass(frozen=True)
class SearchRun:
    """A finished search: its result plus what it was allowed and how long it took."""

    strategy: str
    reward: str | None
    budget: dict[str, float | None]
    result: SearchResult
    search_s: float
    #: Set when the reward backend failed and the search continued without it.
    reward_error: str | None = None


#: Called with every finished search (metrics, the request's log line).
SearchObserver = Callable[[SearchRun], None]


class SolveService:
    """Plans and runs searches against one policy backend, for every route."""

    def __init__(
        self,
        policy: PolicyBackend,
        limits: ServerLimits,
        default_system_prompt: str,
        rewards: dict[str, RewardModel] | None = None,
        observers: Sequence[SearchObserver] = (),
        auto_policy: AutoPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.default_system_prompt = default_system_prompt
        #: Configured reward clients; the first is the default.
        self.rewards = dict(rewards or {})
        self.observers = tuple(observers)
        #: The `auto` strategy's table (None: `auto` is not offered).
        self.auto_policy = auto_policy

    def runnable_strategies(self) -> list[str]:
        """Registered strategies this server can run with their default parameters.

        Without a reward that leaves out those that need one, so `/v1/models` never
        offers an id that can only answer 400 (`plan` still explains the 400).
        `model_construct` reads the defaults without validating them.
        """
        return [
            name
            for name, spec in STRATEGIES.items()
            if (self.rewards or not spec.params_model.model_construct().needs_reward)
            and (name != "auto" or self.auto_policy is not None)
        ]

    def parse(self, body: object) -> SolveRequest:
        """Validate a raw JSON body, checking every field against the server limits."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        try:
            return SolveRequest.model_validate(body, context={"limits": self.limits})
        except ValidationError as error:
            raise InvalidRequest.from_validation(error) from None

    def plan_solve(self, request: SolveRequest) -> SearchPlan:
        """The search a `/v1/solve` body asks for (400 on any bad field)."""
        problem = Problem(
            question=request.question,
            system_prompt=request.system_prompt or self.default_system_prompt,
        )
        return self.plan(request.strategy, request.strategy_fields(), request, problem)

    def respond(self, request: SolveRequest, run: SearchRun, started: float) -> SolveResponse:
        """The `/v1/solve` body of a finished search begun at `started` (monotonic s)."""
        response = self._response(
            request,
            run,
            TimingOut(total_s=time.monotonic() - started, search_s=run.search_s),
        )
        response.reward_error = run.reward_error
        return response

    def plan(
        self,
        strategy: str,
        fields: Mapping[str, Any],
        options: SearchOptions,
        problem: Problem,
        param_names: Mapping[str, str] | None = None,
    ) -> SearchPlan:
        """Resolve the strategy and reward and validate `fields` against the limits.

        `param_names` renames fields in error messages (chat calls `max_new_tokens`
        `max_tokens`), so a 400 names the field as the client spelled it.
        """
        spec = STRATEGIES.get(strategy)
        if spec is None:
            names = ", ".join(sorted(STRATEGIES))
            raise InvalidRequest(
                f"strategy: unknown strategy {strategy!r}; choose one of {names}",
                (param_names or {}).get("strategy", "strategy"),
            )
        try:
            params = spec.params_model.model_validate(
                dict(fields),
                strict=True,
                context={"limits": self.limits, "auto_policy": self.auto_policy},
            )
        except ValidationError as error:
            raise InvalidRequest.from_validation(error, names=param_names) from None
        budget = options.budget
        reward = self._reward_for(options.reward, strategy, params, param_names or {})
        return SearchPlan(
            strategy=strategy,
            spec=spec,
            # An unset `aggregation` is the reward's own (min for the verifier).
            params=with_reward_aggregation(params, reward),
            reward=reward,
            fallback=(
                ContinueWithoutReward(reward)
                if reward is not None and options.reward_fallback == "none"
                else None
            ),
            limits=BudgetLimits(
                max_tokens=budget.max_tokens or self.limits.max_tokens,
                max_reward_calls=budget.max_reward_calls or self.limits.max_reward_calls,
                time_limit_s=budget.time_limit_s or self.limits.max_time_limit_s,
            ),
            problem=problem,
        )

    async def run(
        self,
        plan: SearchPlan,
        on_progress: ProgressSink | None = None,
        trace_progress: bool = False,
    ) -> SearchRun:
        """Run one search under a fresh budget; `on_progress` hears of every wave (with
        the tree as it stands when `trace_progress`)."""
        budget = Budget(plan.limits, on_progress=on_progress, trace_progress=trace_progress)
        started = time.monotonic()
        context = SearchContext(
            plan.problem,
            MeteredPolicy(self.policy, budget),
            budget,
            MeteredReward(plan.fallback or plan.reward, budget) if plan.reward else None,
        )
        with search_session():  # one id for all its engine calls (router affinity)
            result = await plan.spec.run(context, plan.params)
        failure = plan.fallback.failure if plan.fallback is not None else None
        run = SearchRun(
            strategy=plan.strategy,
            reward=plan.reward.name if plan.reward else None,
            budget=asdict(plan.limits),
            result=result,
            search_s=time.monotonic() - started,
            reward_error=(
                f"{failure}; the search continued without reward (reward_fallback=none)"
                if failure is not None
                else None
            ),
        )
        for observer in self.observers:
            observer(run)
        return run

    def _reward_for(
        self,
        name: str | None,
        strategy: str,
        params: StrategyParams,
        param_names: Mapping[str, str],
    ) -> RewardModel | None:
        """The reward client the search will call: the requested one, else the default.

        A named reward is checked even when the parameters do not use it, so a typo
        is a 400 rather than silently ignored.
        """
        if name is not None and name not in self.rewards:
            configured = ", ".join(self.rewards) or "none (start the server with --reward)"
            raise InvalidRequest(
                f"reward: {name!r} is not configured; configured: {configured}",
                "reward",
            )
        if not params.needs_reward:
            return None
        if not self.rewards:
            field = params.reward_field
            value = strategy if field == "strategy" else getattr(params, field)
            param = param_names.get(field, field)
            raise InvalidRequest(
                f"{param}: {value!r} needs a reward model and the server has none; "
                "start it with --reward arithmetic",
                param,
            )
        return self.rewards[name or next(iter(self.rewards))]

    def _response(self, request: SolveRequest, run: SearchRun, timing: TimingOut) -> SolveResponse:
        result = run.result
        return SolveResponse(
            id=f"solve-{uuid.uuid4().hex}",
            model=self.policy.model_name,
            strategy=request.strategy,
            reward=run.reward,
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
            usage=UsageOut.model_validate(result.usage, from_attributes=True),
            timing=timing,
            stopped_reason=result.stopped_reason.value,
            search=result.extra or None,
            trace=(
                [trace_node_out(node) for node in result.trace]
                if request.return_trace and result.trace is not None
                else None
            ),
        )


def trace_node_out(node: TraceNode) -> TraceNodeOut:
    """A trace node as the API returns it."""
    return TraceNodeOut.model_validate(node, from_attributes=True)

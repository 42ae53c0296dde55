"""Per-request compute budget and the usage ledger every engine call is charged to.

A strategy never charges usage by hand: it talks to the policy through
`MeteredPolicy`, which asks the budget before a call, bounds it by the deadline and
charges what came back. That way no code path can spend compute off the books.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TypeVar

from search_strategies.protocols import ChatMessage, Generation, Policy, SamplingConfig
from search_strategies.reward import RewardModel, metering_reward_tokens, validate_scores

if TYPE_CHECKING:  # results imports this module (Usage, StopReason)
    from search_strategies.results import TraceNode

T = TypeVar("T")

#: Builds the search tree as it stands (`TraceNode`s); called only when a listener
#: asked for the tree (`Budget(trace_progress=True)`), so a plain search pays nothing.
TraceSnapshot = Callable[[], "list[TraceNode]"]


class StopReason(str, enum.Enum):
    """Why a search stopped; reported to the client as `stopped_reason`."""

    COMPLETED = "completed"
    TOKEN_BUDGET = "token_budget"
    REWARD_BUDGET = "reward_budget"
    DEADLINE = "deadline"


class BudgetExhausted(Exception):
    """Raised by the metered policy when a call cannot be afforded or ran out of time."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class BudgetLimits:
    """What one request may spend. `None` means unlimited (the server caps it anyway)."""

    max_tokens: int | None = None
    max_reward_calls: int | None = None
    time_limit_s: float | None = None


@dataclass
class Usage:
    """The ledger: what a request spent, counted where it was spent."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_prompt_tokens: int = 0
    engine_calls: int = 0
    #: Sequences the engine generated (samples / engine_calls: how full a call's batch
    #: was, which is what decides a CPU's or GPU's tokens per second).
    samples: int = 0
    reward_calls: int = 0
    #: Tokens the reward backend read (0 for backends that read none, e.g. verifiers).
    reward_tokens: int = 0
    scored_steps: int = 0
    #: Search-tree nodes created (steps or whole solutions); 0 before the first wave.
    nodes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Remaining:
    """What is left of each budget limit when a wave ends (None: that one is unlimited)."""

    tokens: int | None
    reward_calls: int | None
    time_s: float | None


@dataclass(frozen=True)
class Progress:
    """A snapshot a strategy reports after each wave (streamed to clients)."""

    wave: int
    nodes: int
    best_score: float | None
    usage: Usage
    remaining: Remaining | None = None
    #: The whole tree at this wave, when the listener asked for it (the stream of
    #: `/v1/solve` sends the nodes that are new or changed since the last wave).
    trace: tuple[TraceNode, ...] | None = None


#: Receives progress reports; must not block (e.g. `asyncio.Queue.put_nowait`).
ProgressSink = Callable[[Progress], None]


class Budget:
    """Tracks spending against `BudgetLimits` for one request."""

    def __init__(
        self,
        limits: BudgetLimits,
        clock: Callable[[], float] = time.monotonic,
        on_progress: ProgressSink | None = None,
        trace_progress: bool = False,
    ) -> None:
        self.limits = limits
        self.usage = Usage()
        self._clock = clock
        self._started = clock()
        self._on_progress = on_progress
        self._trace_progress = trace_progress
        self._waves = 0
        self._wrap_trace: Callable[[list[TraceNode]], list[TraceNode]] | None = None

    def report_progress(
        self, best_score: float | None = None, trace: TraceSnapshot | None = None
    ) -> None:
        """Tell the listener (if any) that a wave finished; called once per wave.

        `trace` builds the tree as it stands; it is called here, only when the
        listener wants the tree, so the snapshot is of this wave and not a later one.
        """
        self._waves += 1
        if self._on_progress is None:
            return
        tree = None
        if trace is not None and self._trace_progress:
            nodes = trace()
            tree = tuple(self._wrap_trace(nodes) if self._wrap_trace else nodes)
        self._on_progress(
            Progress(
                self._waves,
                self.usage.nodes,
                best_score,
                Usage(**self.usage.as_dict()),
                Remaining(
                    self.remaining_tokens(),
                    self.remaining_reward_calls(),
                    self.remaining_time_s(),
                ),
                tree,
            )
        )

    def wrap_traces(self, wrap: Callable[[list[TraceNode]], list[TraceNode]]) -> None:
        """From now on every reported tree passes through `wrap`: a strategy that runs
        another inside it (as `auto` runs its choice) shows both in one tree."""
        self._wrap_trace = wrap

    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def remaining_tokens(self) -> int | None:
        if self.limits.max_tokens is None:
            return None
        return max(0, self.limits.max_tokens - self.usage.generated_tokens)

    def remaining_time_s(self) -> float | None:
        if self.limits.time_limit_s is None:
            return None
        return max(0.0, self.limits.time_limit_s - self.elapsed_s())

    def remaining_reward_calls(self) -> int | None:
        if self.limits.max_reward_calls is None:
            return None
        return max(0, self.limits.max_reward_calls - self.usage.reward_calls)

    def exhausted(self) -> StopReason | None:
        """The reason no further generation can be made, or None while there is budget."""
        if self.remaining_time_s() == 0.0:
            return StopReason.DEADLINE
        if self.remaining_tokens() == 0:
            return StopReason.TOKEN_BUDGET
        return None

    def reward_exhausted(self) -> StopReason | None:
        """The reason no further reward call can be made, or None while allowed."""
        if self.remaining_time_s() == 0.0:
            return StopReason.DEADLINE
        if self.remaining_reward_calls() == 0:
            return StopReason.REWARD_BUDGET
        return None

    def tokens_per_sample(self, samples: int, wanted: int) -> int:
        """New tokens each of `samples` continuations may generate so the wave fits.

        Returns `wanted` when the budget allows it, less when it does not, and 0 when
        not even one token per sample is affordable.
        """
        remaining = self.remaining_tokens()
        if remaining is None:
            return wanted
        return min(wanted, remaining // max(1, samples))

    def affordable_samples(self, tokens_per_sample: int) -> int | None:
        """How many samples of up to `tokens_per_sample` new tokens still fit (None:
        unlimited). Step searches shrink a wave to this, so they never overshoot."""
        remaining = self.remaining_tokens()
        if remaining is None:
            return None
        return remaining // max(1, tokens_per_sample)

    def charge(self, generations: Sequence[Generation]) -> None:
        self.usage.engine_calls += 1
        for generation in generations:
            self.usage.prompt_tokens += generation.prompt_tokens
            self.usage.cached_prompt_tokens += generation.cached_prompt_tokens
            self.usage.generated_tokens += sum(c.num_tokens for c in generation.completions)
            self.usage.samples += len(generation.completions)


async def within_budget(
    budget: Budget,
    call: Callable[[], Awaitable[T]],
    exhausted: Callable[[], StopReason | None] | None = None,
) -> T:
    """Run `call()` if the budget allows (`exhausted`, default: generation budget),
    cancelled at the deadline.

    Cancellation reaches the backend (vLLM aborts cancelled requests); whatever the
    cancelled call had already spent is lost to the ledger.
    """
    reason = (exhausted or budget.exhausted)()
    if reason is not None:
        raise BudgetExhausted(reason)
    try:
        async with asyncio.timeout(budget.remaining_time_s()):
            return await call()
    except TimeoutError:
        raise BudgetExhausted(StopReason.DEADLINE) from None


class MeteredPolicy:
    """A `Policy` view that enforces a `Budget` on every call and charges its usage."""

    def __init__(self, policy: Policy, budget: Budget) -> None:
        self._policy = policy
        self.budget = budget

    @property
    def model_name(self) -> str:
        return self._policy.model_name

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return await self._policy.encode_chat(messages)

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        """Generate within the deadline; raise `BudgetExhausted` when out of budget."""
        generations = await within_budget(
            self.budget, lambda: self._policy.generate(prompts, params)
        )
        self.budget.charge(generations)
        return generations


class MeteredReward:
    """A `RewardModel` view that validates every answer and charges the call.

    Reward tokens are whatever the clients report with `count_reward_tokens`
    while the call runs; strategies see the same scores either way.
    """

    def __init__(self, reward: RewardModel, budget: Budget) -> None:
        self._reward = reward
        self.budget = budget

    @property
    def name(self) -> str:
        return self._reward.name

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        with metering_reward_tokens() as tokens:
            raw = await within_budget(
                self.budget,
                lambda: self._reward.score(question, solutions),
                self.budget.reward_exhausted,
            )
        self.budget.usage.reward_calls += 1
        self.budget.usage.reward_tokens += tokens.count
        self.budget.usage.scored_steps += sum(len(steps) for steps in solutions)
        return validate_scores(raw, solutions, self._reward.name)

"""What every strategy searches with, in one typed object.

A strategy is `async def name(ctx: SearchContext, params: ItsParams) -> SearchResult`:
the algorithm and nothing else. The problem, the metered policy, the budget and the
reward come from here; the reward is guaranteed to be there whenever the strategy's
params say they need one (`StrategyParams.needs_reward`: the server refuses such a
request without a reward, with a 400 naming the field), so a strategy just reads
`ctx.reward`. Node counting is the step tree's (`StepTree.expand`).
"""

from __future__ import annotations

from dataclasses import dataclass

from search_strategies.budget import Budget, MeteredPolicy, MeteredReward
from search_strategies.protocols import Problem


class MissingReward(ValueError):
    """A strategy read `ctx.reward` on a search started without one (a caller bug:
    the server checks `needs_reward` before it starts a search)."""


@dataclass(frozen=True)
class SearchContext:
    problem: Problem
    policy: MeteredPolicy
    budget: Budget
    #: None when the request's params need no reward (e.g. best-of-N by majority).
    optional_reward: MeteredReward | None = None

    @property
    def reward(self) -> MeteredReward:
        """The reward model; present whenever the params declare they need one."""
        if self.optional_reward is None:
            raise MissingReward("this search needs a reward model and was started without one")
        return self.optional_reward

"""Strategy names → (parameter model, coroutine). Adding a strategy is one line here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from search_strategies.best_of_n import BestOfNParams, best_of_n
from search_strategies.budget import Budget, MeteredPolicy, MeteredReward
from search_strategies.params import StrategyParams
from search_strategies.protocols import Problem
from search_strategies.results import SearchResult

#: (problem, params, policy, reward or None, budget) -> result
StrategyFn = Callable[
    [Problem, Any, MeteredPolicy, MeteredReward | None, Budget], Awaitable[SearchResult]
]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params_model: type[StrategyParams]
    run: StrategyFn


STRATEGIES: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (StrategySpec("best_of_n", BestOfNParams, best_of_n),)
}

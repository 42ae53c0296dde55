"""Strategy names → (parameter model, coroutine). Adding a strategy is one line here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from search_strategies.auto import AutoParams, auto
from search_strategies.beam_search import BeamSearchParams, beam_search
from search_strategies.best_of_n import BestOfNParams, best_of_n
from search_strategies.context import SearchContext
from search_strategies.dvts import DVTSParams, dvts
from search_strategies.mcts import MCTSParams, mcts
from search_strategies.params import StrategyParams
from search_strategies.particle_filtering import (
    ParticleFilteringParams,
    particle_filtering,
)
from search_strategies.results import SearchResult
from search_strategies.revision import RevisionParams, revision

#: (context, the strategy's validated params) -> result
StrategyFn = Callable[[SearchContext, Any], Awaitable[SearchResult]]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params_model: type[StrategyParams]
    run: StrategyFn


STRATEGIES: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec("best_of_n", BestOfNParams, best_of_n),
        StrategySpec("beam_search", BeamSearchParams, beam_search),
        StrategySpec("dvts", DVTSParams, dvts),
        StrategySpec("mcts", MCTSParams, mcts),
        StrategySpec("revision", RevisionParams, revision),
        StrategySpec("particle_filtering", ParticleFilteringParams, particle_filtering),
        StrategySpec("auto", AutoParams, auto),
    )
}

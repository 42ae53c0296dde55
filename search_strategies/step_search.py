"""What every step-level strategy shares: its parameters and how a search ends.

A step search is "anytime": whenever the budget runs out it returns the best
complete solution found so far, or, if none finished, the best-scoring partial one
completed greedily as far as the remaining budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import Field

from search_strategies.answers import extract_answer
from search_strategies.best_of_n import select_by_reward
from search_strategies.budget import Budget, MeteredPolicy, StopReason
from search_strategies.params import StrategyParams, capped_by
from search_strategies.results import Candidate, SearchResult
from search_strategies.reward import Aggregation
from search_strategies.step_tree import NodeStats, NodeStatus, StepConfig, StepNode, StepTree
from search_strategies.steps import DEFAULT_STEP_DELIMITER


class StepSearchParams(StrategyParams):
    """Fields of every strategy that grows solutions one step at a time."""

    max_step_tokens: int = Field(128, ge=1, description="New tokens per step before it is cut.")
    max_steps: int = Field(
        10,
        ge=1,
        description="Steps per solution (tree depth); the last one runs on to the end "
        "of the solution (no step delimiter, up to max_new_tokens).",
    )
    step_delimiter: str = Field(
        DEFAULT_STEP_DELIMITER, min_length=1, description="Text that ends a step (kept)."
    )
    aggregation: Aggregation = Field(
        "last", description="How a path's step rewards combine into its score."
    )

    @property
    def needs_reward(self) -> bool:
        return True

    _step_tokens_cap = capped_by("max_new_tokens", "max_step_tokens")
    _steps_cap = capped_by("max_steps", "max_steps")

    def step_config(self) -> StepConfig:
        return StepConfig(
            delimiter=self.step_delimiter,
            max_step_tokens=self.max_step_tokens,
            max_steps=self.max_steps,
            max_solution_tokens=self.max_new_tokens,
        )


def by_score(node: StepNode) -> tuple[float, float]:
    """Rank of a partial path: its reward, then its likelihood."""
    return node.score or 0.0, node.mean_logprob


async def finish_weighted(
    tree: StepTree,
    finished: list[StepNode],
    partial: list[StepNode],
    params: StepSearchParams,
    policy: MeteredPolicy,
    budget: Budget,
    stopped: StopReason,
    rank: Callable[[StepNode], tuple[float, ...]] = by_score,
    stats: NodeStats | None = None,
    completed_from: Callable[[StepNode, StepNode], None] | None = None,
) -> SearchResult:
    """End a beam-style search: weighted best-of-N over finished paths.

    Without a finished path, the best partial one (by `rank`: score, then
    likelihood, unless the search knows better) is completed greedily within what
    is left of the budget (`completed_from(best, completed)` lets the strategy carry
    its statistics over to the completion).
    """
    if not finished and partial:
        best = max(partial, key=rank)
        completed = await tree.complete_greedily(policy, budget, best, params)
        completed.score = best.score
        if completed_from is not None:
            completed_from(best, completed)
        finished = [completed]
    return result_from(tree, finished, budget, stopped, choose=None, stats=stats)


def result_from(
    tree: StepTree,
    leaves: list[StepNode],
    budget: Budget,
    stopped: StopReason,
    choose: StepNode | None,
    stats: NodeStats | None = None,
) -> SearchResult:
    """The search result over candidate `leaves`; `choose` overrides the weighted pick.

    A search the budget shrank reports `token_budget` even if it ran to the end.
    """
    if stopped is StopReason.COMPLETED and tree.budget_limited:
        stopped = StopReason.TOKEN_BUDGET
    candidates = [to_candidate(leaf) for leaf in leaves]
    if choose is None and candidates:
        picked = select_by_reward(candidates, [c.score for c in candidates], "weighted")
        choose = next(leaf for leaf, c in zip(leaves, candidates) if c is picked)
    chosen = next((c for leaf, c in zip(leaves, candidates) if leaf is choose), None)
    if choose is not None and chosen is None:
        chosen = to_candidate(choose)
    return SearchResult(
        chosen=chosen,
        candidates=candidates,
        usage=budget.usage,
        stopped_reason=stopped,
        trace=tree.trace(choose, stats),
    )


def to_candidate(node: StepNode) -> Candidate:
    """A finished (or budget-cut) path as a candidate solution."""
    text = node.solution_text()
    path = node.path()
    tokens = sum(n.step_tokens for n in path)
    logprob = math.fsum(n.logprob_sum for n in path)
    finished = node.status in (NodeStatus.ANSWERED, NodeStatus.EOS)
    return Candidate(
        text=text,
        answer=extract_answer(text),
        mean_logprob=logprob / tokens if tokens else -math.inf,
        finish_reason="stop" if finished else "length",
        num_tokens=tokens,
        score=node.score if node.score is not None else 0.0,
    )

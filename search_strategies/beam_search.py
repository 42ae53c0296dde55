"""Beam search over reasoning steps, guided by a process reward (Snell et al. 2024).

N beams, beam width M: the root is sampled N ways; every round the PRM scores the
new steps (ONE reward call), the best N/M open paths survive, and each is expanded
M ways (ONE engine call). Finished paths are set aside; once N have finished no path
survives and the search ends; the final answer is the weighted best-of-N over them.
With `lookahead` k, each candidate is rolled out k greedy steps before scoring, and
the rollout's score is credited to the candidate.

`grow_rounds` is the round loop; DVTS reuses it with a different survivor rule.
When to stop is the survivor rule's call too (no survivors: done), because the two
searches end differently: beam search when N paths have finished, DVTS when every
subtree's own best path has.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import Field, ValidationInfo, field_validator

from search_strategies.budget import (
    BudgetExhausted,
    StopReason,
)
from search_strategies.context import SearchContext
from search_strategies.params import capped_by
from search_strategies.results import SearchResult
from search_strategies.step_search import (
    StepSearchParams,
    finish_weighted,
)
from search_strategies.step_tree import StepNode, StepTree

#: (params, tree, scored wave of new nodes, finished count) -> open nodes to expand
#: next, in priority order.
SurvivorRule = Callable[["BeamSearchParams", StepTree, list[StepNode], int], list[StepNode]]


class BeamSearchParams(StepSearchParams):
    n: int = Field(8, ge=1, description="Beams: paths kept alive per round (N).")
    beam_width: int = Field(
        4,
        ge=1,
        validate_default=True,  # the default M must divide the client's n too
        description="Expansions per surviving path (M); N/M paths survive. Divides n.",
    )
    lookahead: int = Field(
        0, ge=0, le=8, description="Greedy steps rolled out before scoring a candidate."
    )

    _n_cap = capped_by("max_n", "n")

    _width_cap = capped_by("max_n", "beam_width")

    @field_validator("beam_width")
    @classmethod
    def _width_within_n(cls, value: int, info: ValidationInfo) -> int:
        n = info.data.get("n")
        if n is not None and value > n:
            raise ValueError(f"must be at most n={n} (N/M beams survive each round)")
        return value

    @field_validator("beam_width")
    @classmethod
    def _width_divides_n(cls, value: int, info: ValidationInfo) -> int:
        """N/M paths of M samples each: a remainder would be silently dropped every
        round (and DVTS would get an uneven last subtree), so refuse it."""
        n = info.data.get("n")
        if n is not None and n % value:
            raise ValueError(
                f"must divide n evenly (n={n}, beam_width={value}): each round samples "
                f"n/beam_width paths beam_width ways; use an n that is a multiple of "
                f"beam_width, e.g. n={n - n % value} or n={n - n % value + value}"
            )
        return value


def top_open(
    params: BeamSearchParams, tree: StepTree, wave: list[StepNode], finished: int
) -> list[StepNode]:
    """Beam search's rule: the best N/M open paths overall, fewer as beams finish,
    and none (the search ends) once N paths have finished."""
    width = params.beam_width
    slots = min(params.n // width, math.ceil((params.n - finished) / width))
    ranked = sorted(
        (n for n in wave if not n.terminal),
        key=lambda n: (n.score or 0.0, n.mean_logprob),
        reverse=True,
    )
    return ranked[: max(0, slots)]


async def grow_rounds(
    ctx: SearchContext, params: BeamSearchParams, survivors: SurvivorRule
) -> SearchResult:
    """Expand, score, keep survivors; repeat until done or out of budget."""
    problem, policy, reward, budget = ctx.problem, ctx.policy, ctx.reward, ctx.budget
    prompt = await policy.encode_chat(problem.messages())
    tree = StepTree(prompt, params.step_config())
    finished: list[StepNode] = []
    frontier: list[StepNode] = []
    stopped = StopReason.COMPLETED
    try:
        wave = _flatten(await tree.expand(policy, budget, [tree.root], params.n, params))
        while wave:
            finished += [n for n in wave if n.terminal]
            frontier = [n for n in wave if not n.terminal]
            extensions = None
            if params.lookahead:
                extensions = await tree.greedy_extensions(
                    policy, budget, wave, params, params.lookahead
                )
            await tree.score(reward, problem.question, wave, params.aggregation, extensions)
            tree.report_wave(budget, max(n.score or 0.0 for n in finished + frontier))
            keep = survivors(params, tree, wave, len(finished))
            if not keep:
                break
            wave = _flatten(await tree.expand(policy, budget, keep, params.beam_width, params))
    except BudgetExhausted as exhausted:
        stopped = exhausted.reason
    return await finish_weighted(tree, finished, frontier, params, policy, budget, stopped)


def _flatten(children: list[list[StepNode]]) -> list[StepNode]:
    return [node for nodes in children for node in nodes]


async def beam_search(ctx: SearchContext, params: BeamSearchParams) -> SearchResult:
    return await grow_rounds(ctx, params, top_open)

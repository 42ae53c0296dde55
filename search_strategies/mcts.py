"""Monte Carlo tree search over reasoning steps (node = step).

Each simulation walks down by PUCT, Q + c_puct · P · sqrt(N_parent) / (1 + N_child),
to a leaf; the leaf is expanded `expansion_width` ways; each new step's value is its
PRM score (or, with `rollout`, the score of a greedy rollout to a final answer), and
that value is backed up as a running mean to the root. Priors P are the policy's own
preference among siblings (softmax of mean token log-probability) or uniform.

To keep the engine busy, simulations run in waves of `wave_size` selections made
with virtual loss (a selected path counts as visited with value 0 until the wave
returns, so the next selection in the wave looks elsewhere); a wave's expansions go
to the engine in ONE call and its new nodes to the PRM in ONE call. What a selection
that lands on an open leaf already chosen in the wave does is `repeat_selection`:

- `widen` (the default): PUCT still says that leaf is the best place to spend, so it
  gets another `expansion_width` children, sampled in the same call (the prompt is
  sampled k·width ways, so every child is a fresh sample even under a seed). The
  first wave, where the root is the only leaf, is then `wave_size` expansions of the
  root instead of one: a full batch from the start (the speed issue: waves of a
  handful of sequences cost 2x per token on a CPU).
- `skip`: it takes no slot; after `wave_size` such collisions the wave closes with
  the distinct leaves it has (the first wave is the root alone).

A finished leaf selected again takes no slot either way (its score backs up once per
wave).

A simulation is one leaf evaluated: one expansion (`expansion_width` children) of an
open leaf or, when PUCT reaches a finished solution, that solution's score backed up
again (which is how visits come to concentrate on good answers; counting it keeps a
solved tree from searching forever). Until a finished leaf is selected, `simulations`
is exactly the number of expansions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from search_strategies.budget import (
    Budget,
    BudgetExhausted,
    MeteredPolicy,
    MeteredReward,
    StopReason,
)
from search_strategies.context import SearchContext
from search_strategies.params import capped_by
from search_strategies.protocols import Problem
from search_strategies.results import SearchResult
from search_strategies.step_search import StepSearchParams, result_from
from search_strategies.step_tree import StepNode, StepTree


class MCTSParams(StepSearchParams):
    simulations: int = Field(
        16,
        ge=1,
        description="Leaves evaluated in total: each expands a distinct open leaf (or "
        "backs up a finished one PUCT reaches again).",
    )
    expansion_width: int = Field(3, ge=1, description="Children sampled per expansion.")
    wave_size: int = Field(
        4, ge=1, description="Most selections (expansions) per batched wave (virtual loss)."
    )
    repeat_selection: Literal["widen", "skip"] = Field(
        "widen",
        description="An open leaf selected again within a wave: widen (another "
        "expansion_width children in the same call) or skip (the wave may close smaller).",
    )
    c_puct: float = Field(1.5, gt=0, le=100, description="Exploration weight.")
    prior: Literal["policy", "uniform"] = Field(
        "policy", description="Sibling priors: the policy's step likelihoods, or uniform."
    )
    rollout: bool = Field(
        False, description="Value a new step by a greedy rollout to a final answer."
    )
    rollout_tokens: int = Field(256, ge=1, description="Token cap of one rollout.")
    final_selection: Literal["visits", "value"] = Field(
        "visits", description="Follow the most visited or the highest-valued child."
    )

    @model_validator(mode="before")
    @classmethod
    def _max_depth_is_max_steps(cls, data: Any) -> Any:
        """Accept MCTS's usual name for the depth limit."""
        if isinstance(data, dict) and "max_depth" in data:
            data = dict(data)
            data.setdefault("max_steps", data.pop("max_depth"))
        return data

    _simulations_cap = capped_by("max_simulations", "simulations")
    _width_cap = capped_by("max_n", "expansion_width", "wave_size")
    _rollout_cap = capped_by("max_new_tokens", "rollout_tokens")


@dataclass
class Visits:
    """MCTS's statistics of one node, kept by the search, not on the shared tree."""

    visits: int = 0
    value_sum: float = 0.0
    #: Policy prior among siblings; uniform until set.
    prior: float = 1.0

    @property
    def value(self) -> float:
        """Mean backed-up value (0 before the first visit)."""
        return self.value_sum / self.visits if self.visits else 0.0


class SearchStats(defaultdict[int, Visits]):
    """Every node's `Visits`, by node id (a node never seen has none yet)."""

    def __init__(self) -> None:
        super().__init__(Visits)

    def of(self, node: StepNode) -> Visits:
        return self[node.id]

    def for_trace(self, node: StepNode) -> dict[str, Any]:
        visits = self.of(node)
        return {"visits": visits.visits, "value": visits.value}


def puct_child(node: StepNode, stats: SearchStats, c_puct: float) -> StepNode:
    """The child PUCT selects: exploit value, explore where the prior is high."""
    scale = c_puct * math.sqrt(max(1, stats.of(node).visits))
    total_prior = sum(stats.of(child).prior for child in node.children) or 1.0

    def puct(child: StepNode) -> float:
        mine = stats.of(child)
        return mine.value + scale * (mine.prior / total_prior) / (1 + mine.visits)

    return max(node.children, key=puct)


def select_leaf(root: StepNode, stats: SearchStats, c_puct: float) -> StepNode:
    node = root
    while node.children and not node.terminal:
        node = puct_child(node, stats, c_puct)
    return node


def backup(node: StepNode, stats: SearchStats, value: float) -> None:
    """Add one visit of `value` to `node` and every ancestor (running mean)."""
    current: StepNode | None = node
    while current is not None:
        mine = stats.of(current)
        mine.visits += 1
        mine.value_sum += value
        current = current.parent


def select_wave(
    root: StepNode, stats: SearchStats, c_puct: float, size: int, widen: bool = False
) -> list[StepNode]:
    """Up to `size` leaves, chosen with virtual loss.

    A selection that lands on a leaf already chosen (a collision) adds its virtual
    loss. With `widen`, an open leaf is listed again (one more expansion of it in the
    same call: `StepTree.expand` samples a listed-k-times prompt k·width ways);
    otherwise, and always for a finished leaf, the collision takes no slot, and after
    `size` of them the tree has no other leaf to offer until this wave is backed up
    (at the start, only the root), so the wave closes with fewer leaves rather than
    backing one solution up twice.
    """
    chosen: list[StepNode] = []
    virtual: list[StepNode] = []
    collisions = 0
    while len(chosen) < size and collisions < size:
        leaf = select_leaf(root, stats, c_puct)
        if leaf in chosen and (leaf.terminal or not widen):
            collisions += 1
        else:
            chosen.append(leaf)
        for node in [root, *leaf.path()]:
            stats.of(node).visits += 1  # a visit worth 0 until the wave returns
            virtual.append(node)
    for node in virtual:
        stats.of(node).visits -= 1
    return chosen


def set_priors(children: list[StepNode], stats: SearchStats, prior: str) -> None:
    if prior == "uniform" or not children:
        for child in children:
            stats.of(child).prior = 1.0
        return
    finite = [c.mean_logprob for c in children if math.isfinite(c.mean_logprob)]
    top = max(finite, default=0.0)
    for child in children:
        lp = child.mean_logprob
        stats.of(child).prior = math.exp(lp - top) if math.isfinite(lp) else 0.0


def best_path_leaf(root: StepNode, stats: SearchStats, final_selection: str) -> StepNode:
    """Walk down by visit count (ties: value) or by value (ties: visits)."""
    node = root
    while node.children:
        visited = [c for c in node.children if stats.of(c).visits] or node.children
        if final_selection == "visits":
            node = max(visited, key=lambda c: (stats.of(c).visits, stats.of(c).value))
        else:
            node = max(visited, key=lambda c: (stats.of(c).value, stats.of(c).visits))
    return node


async def mcts(ctx: SearchContext, params: MCTSParams) -> SearchResult:
    problem, policy, reward, budget = ctx.problem, ctx.policy, ctx.reward, ctx.budget
    prompt = await policy.encode_chat(problem.messages())
    tree = StepTree(prompt, params.step_config())
    stats = SearchStats()
    stopped = StopReason.COMPLETED
    simulations = 0
    try:
        while simulations < params.simulations:
            size = min(params.wave_size, params.simulations - simulations)
            leaves = select_wave(
                tree.root, stats, params.c_puct, size, params.repeat_selection == "widen"
            )
            simulations += await _run_wave(
                problem, params, policy, reward, budget, tree, stats, leaves
            )
    except BudgetExhausted as exhausted:
        stopped = exhausted.reason

    leaf = best_path_leaf(tree.root, stats, params.final_selection)
    if leaf is not tree.root and not leaf.terminal:
        completed = await tree.complete_greedily(policy, budget, leaf, params)
        completed.score = leaf.score
        leaf = completed
    candidates, chosen = _final_pick(tree, leaf, [n for n in tree.nodes if n.terminal])
    return result_from(tree, candidates, budget, stopped, chosen, stats=stats.for_trace)


def _final_pick(
    tree: StepTree, leaf: StepNode, finished: list[StepNode]
) -> tuple[list[StepNode], StepNode | None]:
    """Candidates and the forced choice once the search ends.

    The most-visited path wins when it ended (or was completed). When the budget or
    the deadline left it half-written, a finished solution found elsewhere beats it
    (the weighted pick over them); with none, the partial path is the one candidate,
    so an anytime search always returns the best it has.
    """
    if leaf is tree.root:
        return finished, None
    if leaf.terminal:
        return finished, leaf
    return (finished, None) if finished else ([leaf], leaf)


async def _run_wave(
    problem: Problem,
    params: MCTSParams,
    policy: MeteredPolicy,
    reward: MeteredReward,
    budget: Budget,
    tree: StepTree,
    stats: SearchStats,
    leaves: list[StepNode],
) -> int:
    """Expand the wave's open leaves (one engine call; a leaf listed k times is
    expanded k times), value them (one reward call), back up; finished leaves back up
    their score again.

    Returns the simulations done: expansions (the budget may drop some) plus
    finished leaves backed up; at least one, or `BudgetExhausted` is raised.
    """
    children = await tree.expand(
        policy,
        budget,
        [leaf for leaf in leaves if not leaf.terminal],
        params.expansion_width,
        params,
    )
    new = [child for kids in children for child in kids]
    for parent in {leaf.id: leaf for leaf in leaves if not leaf.terminal}.values():
        set_priors(parent.children, stats, params.prior)  # every copy's children are siblings
    if new:
        extensions = None
        if params.rollout:
            extensions = await tree.greedy_extensions(
                policy, budget, new, params, steps=1, max_tokens=params.rollout_tokens
            )
        await tree.score(reward, problem.question, new, params.aggregation, extensions)
    finished = [leaf for leaf in leaves if leaf.terminal]
    for node in new + finished:
        backup(node, stats, node.score or 0.0)
    best = max((n.score or 0.0 for n in tree.nodes if n.terminal), default=None)
    tree.report_wave(budget, best, stats.for_trace)
    return sum(1 for kids in children if kids) + len(finished)

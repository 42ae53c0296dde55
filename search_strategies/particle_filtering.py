"""Particle filtering over reasoning steps (Puri et al. 2025, "A Probabilistic
Inference Approach to Inference-Time Scaling of LLMs using Particle-Based Monte
Carlo Methods"; its_hub's `ParticleFiltering`).

Search as inference: N particles (partial solutions) advance one step per wave, the
whole wave in one engine call (a node carrying k particles is one prompt sampled k
ways; should resampling leave nodes with different k, one call per distinct k, all
concurrent), and the reward scores every new step in ONE reward call. The reward is
read as the likelihood that the path so far is right: a particle's weight is
exp(logit(score) / weight_temperature), and log-weights add up wave by wave until
the next resampling, so the population follows p(solution) · Π reward, the paper's
target. Resampling draws N particles with replacement in proportion to their
weights (multinomial, or systematic: one uniform draw, less variance), only when
the effective sample size 1/Σw² drops below `ess_threshold` · N: at 1 every wave
resamples (its_hub), at 0 none does (N independent step-wise samples, reweighted).
The resampling RNG is `random.Random(seed)`, so a seeded request is reproducible.

A finished particle stays in the population unchanged and is weighed every wave on
its final score, as live ones are on their current one, so a good answer gains
copies and a poor one loses them. The search ends when every particle has finished;
the answer is the finished particles' weighted vote (weight summed per answer). If
the budget ends it first, the vote runs over the particles that had finished or,
with none, the heaviest partial path is completed greedily.

Lineage is the tree itself: a node drawn k times gets k children in the next wave;
each node's `weight` (its share of the population when last weighed, summed over
its particles) is in the trace.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from search_strategies.best_of_n import select_by_reward
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
from search_strategies.step_search import (
    StepSearchParams,
    finish_weighted,
    result_from,
    to_candidate,
)
from search_strategies.step_tree import StepNode, StepTree

Resampling = Literal["multinomial", "systematic"]

#: Scores are clipped to [EPS, 1 - EPS] before the logit (its_hub's bound), so a
#: reward of exactly 0 or 1 weighs a lot but never infinitely.
EPS = 1e-7


class ParticleFilteringParams(StepSearchParams):
    n: int = Field(8, ge=1, description="Particles: partial solutions in the population.")
    weight_temperature: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Divides the reward logits before the softmax that weighs the "
        "particles: below 1 concentrates on the best paths, above 1 keeps diversity.",
    )
    resampling: Resampling = Field(
        "systematic", description="How N particles are drawn in proportion to weight."
    )
    ess_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Resample when the effective sample size drops below this "
        "fraction of n (1: every wave, 0: never).",
    )

    _n_cap = capped_by("max_n", "n")


# -- weights and resampling: pure functions -------------------------------------------


def score_logit(score: float | None) -> float:
    """The reward as log-odds: the log-weight a score contributes (unscored: 0)."""
    p = min(max(score if score is not None else 0.5, EPS), 1.0 - EPS)
    return math.log(p / (1.0 - p))


def normalized(log_weights: Sequence[float]) -> list[float]:
    """Softmax: weights summing to 1, computed without overflow."""
    top = max(log_weights)
    exps = [math.exp(lw - top) for lw in log_weights]
    total = math.fsum(exps)
    return [e / total for e in exps]


def effective_sample_size(weights: Sequence[float]) -> float:
    """1 / Σw²: n for uniform weights, 1 when one particle holds everything."""
    return 1.0 / math.fsum(w * w for w in weights)


def needs_resampling(weights: Sequence[float], threshold: float) -> bool:
    """ESS below `threshold` · n; the tolerance makes threshold 1 resample even
    uniform weights (whose ESS is n up to rounding), as its_hub does every step."""
    return effective_sample_size(weights) < threshold * len(weights) * (1 + 1e-9)


def resample_indices(weights: Sequence[float], how: Resampling, rng: random.Random) -> list[int]:
    """len(weights) draws with replacement, in proportion to `weights`."""
    n = len(weights)
    if how == "multinomial":
        return rng.choices(range(n), weights=weights, k=n)
    return systematic_indices(weights, rng.random())


def systematic_indices(weights: Sequence[float], u: float) -> list[int]:
    """Systematic resampling: n evenly spaced pointers (u + j) / n, u in [0, 1), into
    the cumulative weights. A particle of weight w gets floor(n·w) or ceil(n·w)
    copies, so it has the variance of multinomial's draws without its luck."""
    n = len(weights)
    cumulative = list(itertools.accumulate(weights))
    indices, i = [], 0
    for j in range(n):
        pointer = (u + j) / n
        while i < n - 1 and cumulative[i] <= pointer:
            i += 1
        indices.append(i)
    return indices


@dataclass(frozen=True)
class Population:
    """Particles as tree nodes (one node may carry several) and their log-weights
    accumulated since the last resampling."""

    nodes: list[StepNode]
    log_weights: list[float]

    @classmethod
    def fresh(cls, nodes: list[StepNode]) -> Population:
        return cls(nodes, [0.0] * len(nodes))

    @property
    def finished(self) -> bool:
        return all(node.terminal for node in self.nodes)

    def weights(self) -> list[float]:
        return normalized(self.log_weights) if self.nodes else []

    def weighed(self, temperature: float) -> Population:
        """Every particle's log-weight plus its current node's score logit / T."""
        return Population(
            self.nodes,
            [
                lw + score_logit(n.score) / temperature
                for lw, n in zip(self.log_weights, self.nodes, strict=True)
            ],
        )

    def resampled(self, indices: list[int]) -> Population:
        return Population.fresh([self.nodes[i] for i in indices])

    def mass(self) -> dict[StepNode, float]:
        """Weight per distinct node (its particles' weights summed), in first-seen order."""
        totals: dict[StepNode, float] = {}
        for node, weight in zip(self.nodes, self.weights(), strict=True):
            totals[node] = totals.get(node, 0.0) + weight
        return totals

    def record(self, weights: dict[int, float]) -> None:
        """Note each node's mass (by node id), for the trace."""
        for node, weight in self.mass().items():
            weights[node.id] = weight


# -- the search -----------------------------------------------------------------------


@dataclass
class ParticleFilter:
    """One request's filter: the tree, the metered backends, the resampling RNG and
    each node's weight as last recorded (the filter's own statistics, by node id)."""

    problem: Problem
    params: ParticleFilteringParams
    policy: MeteredPolicy
    reward: MeteredReward
    budget: Budget
    tree: StepTree
    rng: random.Random
    weights: dict[int, float] = field(default_factory=dict)

    def for_trace(self, node: StepNode) -> dict[str, Any]:
        return {"weight": self.weights.get(node.id)}

    def carry_weight(self, best: StepNode, completed: StepNode) -> None:
        """A partial path completed greedily keeps the weight it was picked by."""
        if best.id in self.weights:
            self.weights[completed.id] = self.weights[best.id]

    async def grow(self, parents: list[StepNode], width: int) -> list[list[StepNode]]:
        """One wave: expand `parents` (one engine call per distinct sampling) and score
        every new node (ONE reward call)."""
        tree, params = self.tree, self.params
        children = await tree.expand(self.policy, self.budget, parents, width, params)
        new = [child for kids in children for child in kids]
        await tree.score(self.reward, self.problem.question, new, params.aggregation)
        return children

    async def first_wave(self) -> Population:
        (children,) = await self.grow([self.tree.root], self.params.n)
        return Population.fresh(children)

    async def advance(self, particles: Population) -> Population:
        """Every live particle one step on, heaviest first in case the budget cannot
        pay for all; finished particles, and any the budget dropped, stay put."""
        weights = particles.weights()
        order = sorted(range(len(weights)), key=lambda i: -weights[i])
        children = await self.grow([particles.nodes[i] for i in order], 1)
        nodes = list(particles.nodes)
        for i, kids in zip(order, children, strict=True):
            if kids:
                nodes[i] = kids[0]
        return Population(nodes, particles.log_weights)

    def resample(self, posterior: Population) -> Population:
        """`posterior` itself, or N particles drawn from it when its ESS is too low."""
        weights = posterior.weights()
        if not needs_resampling(weights, self.params.ess_threshold):
            return posterior
        drawn = resample_indices(weights, self.params.resampling, self.rng)
        return posterior.resampled(drawn)


async def particle_filtering(ctx: SearchContext, params: ParticleFilteringParams) -> SearchResult:
    problem, policy, reward, budget = ctx.problem, ctx.policy, ctx.reward, ctx.budget
    prompt = await policy.encode_chat(problem.messages())
    tree = StepTree(prompt, params.step_config())
    search = ParticleFilter(
        problem, params, policy, reward, budget, tree, random.Random(params.seed)
    )
    posterior = Population.fresh([])
    stopped = StopReason.COMPLETED
    try:
        particles = await search.first_wave()
        while True:
            posterior = particles.weighed(params.weight_temperature)
            posterior.record(search.weights)
            tree.report_wave(budget, max(n.score or 0.0 for n in posterior.nodes), search.for_trace)
            if posterior.finished:
                break
            particles = search.resample(posterior)
            if particles.finished:  # a draw of finished ones only adds noise to the vote
                break
            particles = await search.advance(particles)
    except BudgetExhausted as exhausted:
        stopped = exhausted.reason
    return await _finish(search, posterior, stopped)


async def _finish(
    search: ParticleFilter, posterior: Population, stopped: StopReason
) -> SearchResult:
    """The weighted vote over the last weighed population's finished particles; with
    none finished, its heaviest partial path (or, if no wave was ever weighed, the
    first steps) completed greedily."""
    mass = posterior.mass()
    finished = [node for node in mass if node.terminal]
    tree, budget = search.tree, search.budget
    if not finished:
        partial = list(mass) or tree.root.children
        return await finish_weighted(
            tree,
            [],
            partial,
            search.params,
            search.policy,
            budget,
            stopped,
            rank=lambda n: (search.weights.get(n.id, 0.0), n.score or 0.0, n.mean_logprob),
            stats=search.for_trace,
            completed_from=search.carry_weight,
        )
    candidates = [to_candidate(node) for node in finished]
    weights = [mass[node] for node in finished]
    picked = select_by_reward(candidates, weights, "weighted")
    choose = next(n for n, c in zip(finished, candidates, strict=True) if c is picked)
    return result_from(tree, finished, budget, stopped, choose, stats=search.for_trace)

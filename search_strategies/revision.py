"""Sequential revision (Snell et al. 2024): attempt, get feedback, revise.

Each of `parallel_chains` chains starts with an attempt; the reward model scores its
steps, and the model is then asked to revise, seeing its most recent attempts (at
most `context_attempts`, 4 by default as in the paper's setup) each followed by the
verifier's feedback. A chain stops once an attempt scores at least
`accept_threshold`, or after `max_revisions`. Every round sends all open chains to
the engine in ONE call and all new attempts to the reward model in ONE call. The
answer is the best-scoring attempt over all chains, or a majority vote over them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from search_strategies.best_of_n import select_majority, to_candidate
from search_strategies.budget import (
    Budget,
    BudgetExhausted,
    MeteredPolicy,
    MeteredReward,
    StopReason,
)
from search_strategies.context import SearchContext
from search_strategies.params import StrategyParams, capped_by
from search_strategies.protocols import ChatMessage, Problem
from search_strategies.results import Candidate, SearchResult, TraceNode
from search_strategies.reward import Aggregation, aggregate
from search_strategies.steps import split_steps

REVISE_INSTRUCTION = (
    "Check the steps the verifier doubts, fix any mistake, and write a complete "
    "corrected solution step by step. Put the final answer in \\boxed{}."
)


class RevisionParams(StrategyParams):
    parallel_chains: int = Field(2, ge=1, description="Independent revision chains.")
    max_revisions: int = Field(3, ge=0, le=32, description="Revisions after the first attempt.")
    context_attempts: int = Field(
        4, ge=1, le=4, description="Most recent attempts shown when revising (max 4)."
    )
    accept_threshold: float = Field(
        0.9, ge=0.0, le=1.0, description="A chain stops once an attempt scores this."
    )
    selection: Literal["max_reward", "majority"] = Field(
        "max_reward", description="Pick the best-scoring attempt, or vote over all."
    )
    aggregation: Aggregation = Field("last", description="Step scores -> attempt score.")

    @property
    def needs_reward(self) -> bool:
        return True

    _chains_cap = capped_by("max_n", "parallel_chains")


@dataclass
class Attempt:
    candidate: Candidate
    node_id: int
    step_scores: list[float] | None = None


@dataclass
class Chain:
    attempts: list[Attempt] = field(default_factory=list)
    accepted: bool = False


def feedback(attempt: Attempt) -> str:
    """What the model is told about one attempt: its score and its weakest step."""
    steps = split_steps(attempt.candidate.text)
    scores = attempt.step_scores
    if not scores or not steps:
        return "The verifier could not find any steps in this attempt. " + REVISE_INSTRUCTION
    weakest = min(range(len(steps)), key=lambda i: scores[i])
    return (
        f"A verifier rated this solution {attempt.candidate.score:.2f} out of 1. "
        f"Its weakest step is step {weakest + 1} (score "
        f'{scores[weakest]:.2f}): "{steps[weakest]}". ' + REVISE_INSTRUCTION
    )


def revision_messages(problem: Problem, chain: Chain, context: int) -> list[ChatMessage]:
    """The question, then the last `context` attempts as turns, each with feedback."""
    turns = problem.messages()
    for attempt in chain.attempts[-context:]:
        turns.append(ChatMessage("assistant", attempt.candidate.text))
        turns.append(ChatMessage("user", feedback(attempt)))
    return turns


async def revision(ctx: SearchContext, params: RevisionParams) -> SearchResult:
    problem, policy, reward, budget = ctx.problem, ctx.policy, ctx.reward, ctx.budget
    chains = [Chain() for _ in range(params.parallel_chains)]
    trace = [TraceNode(id=0, parent=None, text="", num_tokens=0)]
    stopped = StopReason.COMPLETED
    try:
        for _round in range(params.max_revisions + 1):
            open_chains = [c for c in chains if not c.accepted]
            if not open_chains:
                break
            new = await _attempt_round(problem, params, policy, budget, open_chains, trace)
            await _score(problem, params, reward, new)
            for chain in open_chains:
                latest = chain.attempts[-1]
                chain.accepted = latest.candidate.score >= params.accept_threshold
            budget.report_progress(
                max(a.candidate.score for a in _all(chains)),
                lambda: [dataclasses.replace(n) for n in _scored(trace, _all(chains))],
            )
            if _cut_by_budget(new, params):
                stopped = StopReason.TOKEN_BUDGET
                break
    except BudgetExhausted as exhausted:
        stopped = exhausted.reason
    return _result(params, chains, trace, budget, stopped)


def _cut_by_budget(new: list[Attempt], params: RevisionParams) -> bool:
    """Whether the budget shortened an attempt this round (then revising stops)."""
    return any(
        a.candidate.finish_reason == "length" and a.candidate.num_tokens < params.max_new_tokens
        for a in new
    )


async def _attempt_round(
    problem: Problem,
    params: RevisionParams,
    policy: MeteredPolicy,
    budget: Budget,
    chains: list[Chain],
    trace: list[TraceNode],
) -> list[Attempt]:
    """One engine call: a first attempt (n = chains) or a revision per open chain."""
    per_sample = budget.tokens_per_sample(len(chains), params.max_new_tokens)
    if per_sample == 0:
        raise BudgetExhausted(budget.exhausted() or StopReason.TOKEN_BUDGET)

    if not chains[0].attempts:  # first round: every chain answers the bare question
        prompt = await policy.encode_chat(problem.messages())
        (generation,) = await policy.generate([prompt], params.sampling(len(chains), per_sample))
        completions = list(generation.completions)
    else:
        prompts = await asyncio.gather(  # a remote policy tokenizes over HTTP
            *(
                policy.encode_chat(revision_messages(problem, c, params.context_attempts))
                for c in chains
            )
        )
        generations = await policy.generate(prompts, params.sampling(1, per_sample))
        completions = [g.completions[0] for g in generations]
    new = []
    for chain, completion in zip(chains, completions, strict=True):
        parent = chain.attempts[-1].node_id if chain.attempts else 0
        attempt = Attempt(to_candidate(completion), node_id=len(trace))
        trace.append(
            TraceNode(
                id=len(trace), parent=parent, text=completion.text, num_tokens=completion.num_tokens
            )
        )
        chain.attempts.append(attempt)
        new.append(attempt)
    budget.usage.nodes += len(new)
    return new


async def _score(
    problem: Problem, params: RevisionParams, reward: MeteredReward, attempts: list[Attempt]
) -> None:
    """One reward call over every new attempt; an attempt without steps scores 0."""
    steps = [split_steps(a.candidate.text) for a in attempts]
    scored = [i for i, s in enumerate(steps) if s]
    if not scored:
        return
    results = await reward.score(problem.question, [steps[i] for i in scored])
    for i, step_scores in zip(scored, results, strict=True):
        attempts[i].step_scores = step_scores
        attempts[i].candidate.score = aggregate(step_scores, params.aggregation)


def _all(chains: list[Chain]) -> list[Attempt]:
    return [attempt for chain in chains for attempt in chain.attempts]


def _result(
    params: RevisionParams,
    chains: list[Chain],
    trace: list[TraceNode],
    budget: Budget,
    stopped: StopReason,
) -> SearchResult:
    attempts = _all(chains)
    candidates = [a.candidate for a in attempts]
    any_scored = any(a.step_scores is not None for a in attempts)
    if params.selection == "majority" or not any_scored:
        winner = select_majority(candidates)
        picked = next((a for a in attempts if a.candidate is winner), None)
    else:
        picked = max(
            attempts,
            key=lambda a: (a.candidate.score, a.candidate.mean_logprob),
            default=None,
        )
    chosen = picked.candidate if picked else None
    if picked is not None:
        _mark_chosen(trace, picked.node_id)
    return SearchResult(
        chosen=chosen,
        candidates=candidates,
        usage=budget.usage,
        stopped_reason=stopped,
        trace=_scored(trace, attempts),
    )


def _scored(trace: list[TraceNode], attempts: list[Attempt]) -> list[TraceNode]:
    """`trace` with each attempt's node carrying its score (None until scored)."""
    for node, attempt in zip(trace[1:], sorted(attempts, key=lambda a: a.node_id)):
        node.score = attempt.candidate.score if attempt.step_scores is not None else None
    return trace


def _mark_chosen(trace: list[TraceNode], node_id: int) -> None:
    """Mark the chosen attempt and the attempts it revised, back to the root."""
    by_id = {node.id: node for node in trace}
    current: int | None = node_id
    while current is not None:
        by_id[current].chosen = True
        current = by_id[current].parent

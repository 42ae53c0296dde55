"""Best-of-N: sample N full solutions in one engine call and pick one.

Selection is a majority vote over extracted final answers (self-consistency), ties
broken by the answer group's mean token log-probability. Reward-weighted selection
plugs in as another `selection` value once reward clients exist.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from search_strategies.answers import extract_answer
from search_strategies.budget import Budget, BudgetExhausted, MeteredPolicy, StopReason
from search_strategies.params import StrategyParams, at_most_limit
from search_strategies.protocols import Completion, Problem
from search_strategies.results import Candidate, SearchResult, TraceNode


class BestOfNParams(StrategyParams):
    n: int = Field(4, ge=1, description="Number of solutions sampled in one engine call.")
    selection: Literal["majority"] = Field(
        "majority", description="How the answer is picked from the N samples."
    )

    @field_validator("n")
    @classmethod
    def _within_n_limit(cls, value: int, info: ValidationInfo) -> int:
        at_most_limit(value, info, "max_n")
        return value


def to_candidate(completion: Completion) -> Candidate:
    return Candidate(
        text=completion.text,
        answer=extract_answer(completion.text),
        mean_logprob=completion.mean_logprob,
        finish_reason=completion.finish_reason,
        num_tokens=completion.num_tokens,
    )


def select_majority(candidates: list[Candidate]) -> Candidate | None:
    """Score each candidate by its answer's vote share and return the winner.

    Candidates without an answer get score 0 and win only when nobody has an answer.
    Among equal vote counts the group with the higher mean log-probability wins;
    within the winning group, the most likely sample is the one returned.
    """
    if not candidates:
        return None
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        if candidate.answer is not None:
            groups[candidate.answer].append(candidate)
    for members in groups.values():
        for member in members:
            member.score = len(members) / len(candidates)
    if not groups:
        return max(candidates, key=lambda c: c.mean_logprob)

    def group_key(members: list[Candidate]) -> tuple[int, float]:
        return len(members), sum(m.mean_logprob for m in members) / len(members)

    winners = max(groups.values(), key=group_key)
    return max(winners, key=lambda c: c.mean_logprob)


async def best_of_n(
    problem: Problem, params: BestOfNParams, policy: MeteredPolicy, budget: Budget
) -> SearchResult:
    """Sample `params.n` solutions in ONE engine call and select by majority vote."""
    prompt = await policy.encode_chat(problem.messages())
    per_sample = budget.tokens_per_sample(params.n, params.max_new_tokens)
    if per_sample == 0:
        return _empty_result(budget, budget.exhausted() or StopReason.TOKEN_BUDGET)
    try:
        (generation,) = await policy.generate([prompt], params.sampling(params.n, per_sample))
    except BudgetExhausted as exhausted:
        return _empty_result(budget, exhausted.reason)

    candidates = [to_candidate(c) for c in generation.completions]
    chosen = select_majority(candidates)
    capped = per_sample < params.max_new_tokens
    truncated = any(c.finish_reason == "length" for c in candidates)
    stopped = StopReason.TOKEN_BUDGET if capped and truncated else StopReason.COMPLETED
    trace = [TraceNode(id=0, parent=None, text="", num_tokens=generation.prompt_tokens)]
    trace += [
        TraceNode(
            id=index + 1,
            parent=0,
            text=c.text,
            num_tokens=c.num_tokens,
            chosen=c is chosen,
            score=c.score,
        )
        for index, c in enumerate(candidates)
    ]
    if chosen is not None:
        trace[0].chosen = True
    return SearchResult(
        answer=chosen.answer if chosen else None,
        chosen=chosen,
        candidates=candidates,
        usage=budget.usage,
        stopped_reason=stopped,
        trace=trace,
    )


def _empty_result(budget: Budget, reason: StopReason) -> SearchResult:
    return SearchResult(
        answer=None, chosen=None, candidates=[], usage=budget.usage, stopped_reason=reason
    )

"""Best-of-N: sample N full solutions in one engine call and pick one.

Selections (Snell et al. 2024 compare them):
- `majority`: vote over extracted final answers (self-consistency), ties broken by
  the answer group's mean token log-probability; needs no reward model.
- `weighted`: the answer whose solutions' rewards sum highest ("weighted best-of-N").
- `max_reward`: the single solution with the highest reward.
Rewards come from one batched reward call over every sample's steps, aggregated
per solution (`last` step by default).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from search_strategies.answers import canonical_answer, extract_answer
from search_strategies.budget import (
    Budget,
    BudgetExhausted,
    MeteredReward,
    StopReason,
)
from search_strategies.context import SearchContext
from search_strategies.params import StrategyParams, capped_by
from search_strategies.protocols import ChatMessage, Completion, Problem
from search_strategies.results import Candidate, SearchResult, TraceNode
from search_strategies.reward import Aggregation, aggregate
from search_strategies.steps import split_steps

Selection = Literal["majority", "weighted", "max_reward"]


class BestOfNParams(StrategyParams):
    n: int = Field(4, ge=1, description="Number of solutions sampled in one engine call.")
    selection: Selection = Field(
        "majority", description="How the answer is picked from the N samples."
    )
    aggregation: Aggregation = Field(
        "last", description="How step rewards combine into a solution's reward."
    )
    answer_prefix: str | None = Field(
        None,
        description="A partial solution to continue: every sample continues it, and "
        "candidates hold the continuation only (answers are read from it). Only with "
        "selection=majority, since a reward would judge the continuation alone "
        "(Monte-Carlo step labels: `ponder learn label-mc`).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {
                        "properties": {"answer_prefix": {"type": "string", "minLength": 1}},
                        "required": ["answer_prefix"],
                    },
                    "then": {"properties": {"selection": {"const": "majority"}}},
                }
            ]
        }
    )

    reward_field: ClassVar[str] = "selection"

    @model_validator(mode="after")
    def _prefix_only_for_a_vote(self) -> BestOfNParams:
        if self.answer_prefix and self.selection != "majority":
            raise ValueError(
                f"answer_prefix: continuing a partial solution needs selection=majority "
                f"(got {self.selection!r}): a reward would judge the continuation alone"
            )
        return self

    @property
    def needs_reward(self) -> bool:
        return self.selection != "majority"

    _n_cap = capped_by("max_n", "n")


def to_candidate(completion: Completion) -> Candidate:
    return Candidate(
        text=completion.text,
        answer=extract_answer(completion.text),
        mean_logprob=completion.mean_logprob,
        finish_reason=completion.finish_reason,
        num_tokens=completion.num_tokens,
    )


def vote_shares(candidates: list[Candidate]) -> list[float]:
    """Each candidate's answer's share of the votes (canonical answers; none: 0)."""
    groups = _answer_groups(candidates)
    size = {id(m): len(members) for members in groups.values() for m in members}
    return [size.get(id(c), 0) / len(candidates) for c in candidates]


def select_majority(candidates: list[Candidate]) -> Candidate | None:
    """The majority vote's winner (pure: the candidates are not touched).

    Candidates without an answer win only when nobody has an answer. Votes count
    canonical answers (`0.5` and `\\frac{1}{2}` agree). Among equal vote counts the
    group with the higher mean log-probability wins; within the winning group, the
    most likely sample written in its most common form is returned.
    """
    if not candidates:
        return None
    groups = _answer_groups(candidates)
    if not groups:
        return max(candidates, key=lambda c: c.mean_logprob)

    def group_key(members: list[Candidate]) -> tuple[int, float]:
        return len(members), sum(m.mean_logprob for m in members) / len(members)

    winners = max(groups.values(), key=group_key)
    return _in_common_form(winners, lambda c: c.mean_logprob)


def select_by_reward(
    candidates: list[Candidate], rewards: list[float], selection: Selection
) -> Candidate | None:
    """The pick by `rewards` (one per candidate; pure: the candidates are not touched).

    `weighted` sums rewards per canonical answer (answerless samples only win when no
    sample has an answer) and returns the group's best sample in its most common form;
    `max_reward` takes the best single sample. Ties go to the higher mean log-probability.
    """
    if len(rewards) != len(candidates):
        raise ValueError(f"{len(rewards)} rewards for {len(candidates)} candidates")
    if not candidates:
        return None
    reward_of = {id(c): r for c, r in zip(candidates, rewards)}

    def key(candidate: Candidate) -> tuple[float, float]:
        return reward_of[id(candidate)], candidate.mean_logprob

    groups = _answer_groups(candidates)
    if selection == "max_reward" or not groups:
        return max(candidates, key=key)

    def group_key(members: list[Candidate]) -> tuple[float, float]:
        return sum(reward_of[id(m)] for m in members), max(m.mean_logprob for m in members)

    return _in_common_form(max(groups.values(), key=group_key), key)


def _in_common_form(
    members: list[Candidate], best: Callable[[Candidate], float | tuple[float, float]]
) -> Candidate:
    """The `best` member among those written in the group's most common surface form.

    A group merges `0.5`, `1/2` and `\\frac{1}{2}`; the reported answer is the form
    most samples chose (ties go to the form of the `best` sample), and it is returned
    with its own solution so the text and the answer agree.
    """
    forms = Counter(member.answer for member in members)
    return max(members, key=lambda member: (forms[member.answer], best(member)))


def _answer_groups(candidates: list[Candidate]) -> dict[str, list[Candidate]]:
    """Candidates with an answer, grouped by canonical answer for voting."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        if candidate.answer is not None:
            groups[canonical_answer(candidate.answer)].append(candidate)
    return groups


async def _rewards(
    problem: Problem, candidates: list[Candidate], reward: MeteredReward, how: Aggregation
) -> list[float]:
    """One batched reward call over every sample; a sample with no steps scores 0."""
    steps = [split_steps(c.text) for c in candidates]
    scored = [i for i, s in enumerate(steps) if s]
    rewards = [0.0] * len(candidates)
    if scored:
        step_scores = await reward.score(problem.question, [steps[i] for i in scored])
        for index, scores in zip(scored, step_scores):
            rewards[index] = aggregate(scores, how)
    return rewards


async def best_of_n(ctx: SearchContext, params: BestOfNParams) -> SearchResult:
    """Sample `params.n` solutions in ONE engine call, score them in one reward call."""
    problem, policy, budget = ctx.problem, ctx.policy, ctx.budget
    messages = problem.messages()
    if params.answer_prefix:  # left open: the samples continue it
        messages.append(ChatMessage("assistant", params.answer_prefix))
    prompt = await policy.encode_chat(messages)
    per_sample = budget.tokens_per_sample(params.n, params.max_new_tokens)
    if per_sample == 0:
        return _empty_result(budget, budget.exhausted() or StopReason.TOKEN_BUDGET)
    try:
        (generation,) = await policy.generate([prompt], params.sampling(params.n, per_sample))
    except BudgetExhausted as exhausted:
        return _empty_result(budget, exhausted.reason)

    candidates = [to_candidate(c) for c in generation.completions]
    budget.usage.nodes += len(candidates)
    budget.report_progress(trace=lambda: _trace(generation.prompt_tokens, candidates, None))
    reward = ctx.reward if params.needs_reward else None
    chosen, stopped_early = await _select(problem, params, candidates, reward)
    capped = per_sample < params.max_new_tokens
    truncated = any(c.finish_reason == "length" for c in candidates)
    stopped = stopped_early or (
        StopReason.TOKEN_BUDGET if capped and truncated else StopReason.COMPLETED
    )
    return SearchResult(
        chosen=chosen,
        candidates=candidates,
        usage=budget.usage,
        stopped_reason=stopped,
        trace=_trace(generation.prompt_tokens, candidates, chosen),
    )


async def _select(
    problem: Problem,
    params: BestOfNParams,
    candidates: list[Candidate],
    reward: MeteredReward | None,
) -> tuple[Candidate | None, StopReason | None]:
    """The chosen candidate, and why the search stopped early if the reward ran out.

    Each candidate's `score` becomes what it was judged by: its reward, or under a
    vote its answer's vote share.
    """
    stopped = None
    if params.needs_reward:
        if reward is None:
            raise ValueError(f"selection {params.selection!r} needs a reward model")
        try:
            rewards = await _rewards(problem, candidates, reward, params.aggregation)
        except BudgetExhausted as exhausted:  # the samples exist: fall back to voting
            stopped = exhausted.reason
        else:
            _set_scores(candidates, rewards)
            return select_by_reward(candidates, rewards, params.selection), None
    _set_scores(candidates, vote_shares(candidates))
    return select_majority(candidates), stopped


def _set_scores(candidates: list[Candidate], scores: list[float]) -> None:
    for candidate, score in zip(candidates, scores, strict=True):
        candidate.score = score


def _trace(
    prompt_tokens: int, candidates: list[Candidate], chosen: Candidate | None
) -> list[TraceNode]:
    """Root (the prompt) and one leaf per sample; the chosen path is marked."""
    root = TraceNode(
        id=0, parent=None, text="", num_tokens=prompt_tokens, chosen=chosen is not None
    )
    return [root] + [
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


def _empty_result(budget: Budget, reason: StopReason) -> SearchResult:
    return SearchResult(chosen=None, candidates=[], usage=budget.usage, stopped_reason=reason)

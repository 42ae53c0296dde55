"""Best-of-N selection and budget logic on a scripted policy (engine tests: HTTP)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from search_strategies.best_of_n import (
    BestOfNParams,
    best_of_n,
    select_by_reward,
    select_majority,
    vote_shares,
)
from search_strategies.budget import (
    Budget,
    BudgetLimits,
    MeteredPolicy,
    MeteredReward,
    StopReason,
)
from search_strategies.context import SearchContext
from search_strategies.protocols import Problem
from search_strategies.results import Candidate
from search_strategies.reward import RewardError
from tests.fakes import ScriptedPolicy


def candidate(answer: str | None, logprob: float) -> Candidate:
    return Candidate(
        text=str(answer), answer=answer, mean_logprob=logprob, finish_reason="stop", num_tokens=3
    )


def run(policy: ScriptedPolicy, limits: BudgetLimits = BudgetLimits(), **params):
    budget = Budget(limits)
    context = SearchContext(Problem("q?"), MeteredPolicy(policy, budget), budget)
    return asyncio.run(best_of_n(context, BestOfNParams(**params)))


def test_majority_beats_likelihood() -> None:
    pool = [candidate("7", -0.1), candidate("8", -2.0), candidate("8", -1.5)]
    before = [vars(c).copy() for c in pool]
    chosen = select_majority(pool)
    assert chosen is pool[2]  # most likely member of the winning group
    assert vote_shares(pool) == [1 / 3, 2 / 3, 2 / 3]
    assert [vars(c) for c in pool] == before  # pure: nothing written on the candidates


def test_tie_broken_by_mean_logprob_of_group() -> None:
    pool = [candidate("1", -1.0), candidate("1", -1.0), candidate("2", -0.2), candidate("2", -0.4)]
    assert select_majority(pool).answer == "2"


def test_no_answers_falls_back_to_most_likely() -> None:
    pool = [candidate(None, -1.0), candidate(None, -0.3)]
    assert select_majority(pool) is pool[1]
    assert select_majority([]) is None


def test_all_samples_in_one_engine_call() -> None:
    policy = ScriptedPolicy(["so \\boxed{4}", "it is 5", "\\boxed{4}!"])
    result = run(policy, n=6, max_new_tokens=50)
    assert len(policy.calls) == 1 and policy.calls[0][1].n == 6
    assert result.answer == "4"
    assert result.usage.engine_calls == 1
    assert result.usage.generated_tokens == sum(c.num_tokens for c in result.candidates)
    assert result.stopped_reason is StopReason.COMPLETED


def test_deadline_returns_without_answer() -> None:
    policy = ScriptedPolicy(["\\boxed{1}"], delay_s=5)
    result = run(policy, BudgetLimits(time_limit_s=0.2), n=2)
    assert result.stopped_reason is StopReason.DEADLINE
    assert result.answer is None and result.usage.engine_calls == 0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 16),
    max_new_tokens=st.integers(1, 80),
    max_tokens=st.integers(1, 400),
    length=st.integers(1, 100),
)
def test_generated_tokens_never_exceed_budget(
    n: int, max_new_tokens: int, max_tokens: int, length: int
) -> None:
    policy = ScriptedPolicy(["x" * length])
    result = run(policy, BudgetLimits(max_tokens=max_tokens), n=n, max_new_tokens=max_new_tokens)
    assert result.usage.generated_tokens <= max_tokens
    if max_tokens < n:  # not one token per sample affordable: no call at all
        assert result.usage.engine_calls == 0
        assert result.stopped_reason is StopReason.TOKEN_BUDGET
    elif max_tokens // n < min(max_new_tokens, length):
        assert result.stopped_reason is StopReason.TOKEN_BUDGET
    else:
        assert result.stopped_reason is StopReason.COMPLETED


class PreferAnswer:
    """A reward that likes every step of solutions mentioning `liked`."""

    name = "prefers"

    def __init__(self, liked: str) -> None:
        self.liked = liked
        self.calls: list[int] = []

    async def score(self, question, solutions):
        self.calls.append(len(solutions))
        return [[0.9 if self.liked in "".join(s) else 0.1 for s in steps] for steps in solutions]


def run_with_reward(policy: ScriptedPolicy, reward, **params):
    budget = Budget(BudgetLimits())
    context = SearchContext(
        Problem("q?"), MeteredPolicy(policy, budget), budget, MeteredReward(reward, budget)
    )
    return asyncio.run(best_of_n(context, BestOfNParams(**params)))


def test_weighted_selection_follows_reward_not_majority() -> None:
    texts = ["step\n\n\\boxed{7}", "step\n\n\\boxed{7}", "step\n\n\\boxed{9}"]
    reward = PreferAnswer("9")
    majority = run(ScriptedPolicy(texts), n=3)
    weighted = run_with_reward(ScriptedPolicy(texts), reward, n=3, selection="weighted")
    assert majority.answer == "7"
    assert weighted.answer == "9"  # 0.9 beats 0.1 + 0.1
    assert reward.calls == [3]  # all samples in one reward call
    assert weighted.usage.reward_calls == 1 and weighted.usage.scored_steps == 6


def test_weighted_sums_rewards_per_answer() -> None:
    pool = [candidate("7", -1.0), candidate("7", -1.0), candidate("9", -0.1)]
    assert select_by_reward(pool, [0.5, 0.5, 0.8], "weighted").answer == "7"
    assert select_by_reward(pool, [0.5, 0.5, 0.8], "max_reward").answer == "9"
    assert [c.score for c in pool] == [0.0, 0.0, 0.0]  # pure: the rewards are not written
    with pytest.raises(ValueError, match="2 rewards for 3 candidates"):
        select_by_reward(pool, [0.5, 0.5], "weighted")


def test_bad_reward_output_is_an_error() -> None:
    class Broken(PreferAnswer):
        name = "broken"

        async def score(self, question, solutions):
            return [[float("nan")] for _ in solutions]

    with pytest.raises(RewardError, match="broken"):
        run_with_reward(ScriptedPolicy(["a\n\nb"]), Broken("x"), n=2, selection="max_reward")

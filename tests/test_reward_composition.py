"""Reward plumbing without engines: formats, ensemble, fallback, `--reward`, token metering."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.combinators import ContinueWithoutReward, Renamed, WeightedEnsemble
from reward_clients.prm_formats import (
    good_probability,
    math_shepherd_text,
    qwen_prm_messages,
    rlhflow_messages,
)
from reward_clients.registry import ENSEMBLE, build_rewards, parse_reward_spec
from search_strategies.budget import Budget, BudgetLimits, MeteredReward
from search_strategies.reward import (
    RewardError,
    RewardUnavailable,
    count_reward_tokens,
)
from server.rewards import prm_kind, validate_reward_settings
from server.settings import Settings
from tests.fakes import ScriptedPolicy


@dataclass
class Constant:
    """A reward that scores every step `value` and reports `tokens` per call."""

    name: str
    value: float
    tokens: int = 0
    fail: BaseException | None = None
    calls: list[int] = field(default_factory=list)

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        self.calls.append(len(solutions))
        if self.fail is not None:
            raise self.fail
        count_reward_tokens(self.tokens)
        return [[self.value] * len(steps) for steps in solutions]


def run(coro):
    return asyncio.run(coro)


def test_qwen_format_tags_every_step() -> None:
    system, user, assistant = qwen_prm_messages("Q?", ["a", "b"])
    assert (system.role, user.role, assistant.role) == ("system", "user", "assistant")
    assert "\\boxed{}" in system.content and user.content == "Q?"
    assert assistant.content == "a<extra_0>b<extra_0>"


def test_math_shepherd_format_numbers_steps_and_tags_them() -> None:
    assert math_shepherd_text("Q?", ["a", "Step 2: b"]) == "Q? Step 1: a ки\nStep 2: b ки"


def test_rlhflow_format_is_one_user_turn_per_step_with_plus_answers() -> None:
    turns = rlhflow_messages("Q?", ["a", "b", "c"], 1)
    assert [(t.role, t.content) for t in turns] == [
        ("user", "Q? a"),
        ("assistant", "+"),
        ("user", "b"),
    ]


def test_good_probability() -> None:
    assert good_probability(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)
    assert good_probability(-math.inf, -math.inf) == 0.5
    assert good_probability(0.0, -2000.0) == 1.0 and good_probability(-2000.0, 0.0) < 1e-300
    assert math.isnan(good_probability(math.nan, 0.0))


def test_ensemble_is_the_weighted_mean_and_asks_every_member_once() -> None:
    a, b = Constant("a", 1.0), Constant("b", 0.0)
    ensemble = WeightedEnsemble([(a, 3.0), (b, 1.0)])
    assert run(ensemble.score("q", [["x", "y"], []])) == [[0.75, 0.75], []]
    assert a.calls == [2] and b.calls == [2]
    with pytest.raises(ValueError, match="positive"):
        WeightedEnsemble([(a, 0.0)])


def test_ensemble_names_the_member_that_returned_garbage() -> None:
    ensemble = WeightedEnsemble([(Constant("good", 0.5), 1.0), (Constant("broken", 7.0), 1.0)])
    with pytest.raises(RewardError, match="broken: solution 0, step 0"):
        run(ensemble.score("q", [["x"]]))


def test_ensemble_of_real_verifier_and_constant() -> None:
    ensemble = WeightedEnsemble([(ArithmeticVerifier(), 0.5), (Constant("c", 0.5), 0.5)])
    assert run(ensemble.score("q", [["3 * 4 = 12", "3 * 4 = 13"]])) == [[0.75, 0.25]]


def test_fallback_continues_with_neutral_scores_and_stops_asking() -> None:
    down = Constant("prm", 1.0, fail=RewardUnavailable("prm: remote PRM at X unreachable"))
    fallback = ContinueWithoutReward(down)
    assert run(fallback.score("q", [["a", "b"]])) == [[0.5, 0.5]]
    assert run(fallback.score("q", [["a"]])) == [[0.5]]
    assert down.calls == [1] and "unreachable" in (fallback.failure or "")


def test_fallback_does_not_hide_bad_scores() -> None:
    broken = Constant("prm", 1.0, fail=RewardError("prm: solution 0 has 2 steps but 3 tags"))
    with pytest.raises(RewardError, match="3 tags"):
        run(ContinueWithoutReward(broken).score("q", [["a"]]))


def test_reward_tokens_are_charged_per_call_including_ensemble_members() -> None:
    budget = Budget(BudgetLimits())
    members = [(Constant("a", 0.2, tokens=30), 1.0), (Constant("b", 0.4, tokens=12), 1.0)]
    ensemble = WeightedEnsemble(members)
    metered = MeteredReward(ensemble, budget)
    assert run(metered.score("q", [["x"]])) == [[pytest.approx(0.3)]]
    run(metered.score("q", [["x"]]))
    assert budget.usage.reward_tokens == 84 and budget.usage.reward_calls == 2


@pytest.mark.parametrize(
    ("spec", "choices"),
    [
        ("", ()),
        ("arithmetic", ("arithmetic",)),
        ("self-judge, arithmetic", ("self-judge", "arithmetic")),
        ("arithmetic:0.5,self-judge:0.5", (ENSEMBLE, "arithmetic", "self-judge")),
        ("prm:2,arithmetic:1", (ENSEMBLE, "prm", "arithmetic")),
    ],
)
def test_reward_spec(spec: str, choices: tuple[str, ...]) -> None:
    assert parse_reward_spec(spec, ("prm",)).choices == choices


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("oracle", "unknown reward 'oracle'"),
        ("prm", "unknown reward 'prm'"),  # no --prm configured
        ("arithmetic:0", "must be a positive number"),
        ("arithmetic:x", "must be a positive number"),
        ("arithmetic:nan", "must be a positive number"),
        ("arithmetic:1,self-judge", "not a mix"),
        ("arithmetic,arithmetic", "listed twice"),
    ],
)
def test_bad_reward_spec(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_reward_spec(spec)


def test_build_rewards_offers_ensemble_first_then_members_then_extra() -> None:
    prm = Renamed(ArithmeticVerifier(), "prm")
    rewards = build_rewards("arithmetic:1,self-judge:1", ScriptedPolicy(["yes"]), {"prm": prm})
    assert list(rewards) == [ENSEMBLE, "arithmetic", "self-judge", "prm"]
    assert [r.name for r in rewards.values()] == list(rewards)
    assert build_rewards("prm:1,arithmetic:3", ScriptedPolicy(["yes"]), {"prm": prm})[
        ENSEMBLE
    ].members[0] == (prm, 1.0)


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        (Settings(), None),
        (Settings(prm="/models/qwen-prm"), "qwen"),
        (Settings(prm_url="http://h:1", prm_kind="rlhflow"), "rlhflow"),
        (Settings(prm_kind="self-judge"), "self-judge"),
        (Settings(prm_kind="arithmetic", reward="prm:1,self-judge:1"), "arithmetic"),
    ],
)
def test_prm_settings(settings: Settings, kind: str | None) -> None:
    assert prm_kind(settings) == kind
    validate_reward_settings(settings)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (Settings(prm_kind="oracle"), "unknown kind 'oracle'"),
        (Settings(prm_kind="qwen"), "needs --prm MODEL or --prm-url"),
        (Settings(prm_kind="arithmetic", prm="/m"), "takes no model"),
        (Settings(reward="prm"), "unknown reward 'prm'"),
    ],
)
def test_bad_prm_settings(settings: Settings, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        validate_reward_settings(settings)

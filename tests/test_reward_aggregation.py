"""Which aggregation a reward's step scores get when a request does not say (issue 13, defect 7).

Steps scored `[0, 1, 0.5]` by the arithmetic verifier aggregate to 0.5 under "last",
the same as a solution with nothing to check: the wrong first step is hidden. The
default is now the reward's own: "min" for judges of single steps, "last" for PRMs
trained on prefixes; a request that names an aggregation keeps it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, cast

import pytest

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.combinators import ContinueWithoutReward, Renamed, WeightedEnsemble
from reward_clients.learned_prm import PRMBackend, QwenPRM, TokenLogitPRM
from reward_clients.self_judge import SelfJudge
from search_strategies.auto_policy import AutoChoice, AutoPolicy, DifficultyBin
from search_strategies.params import ServerLimits, StrategyParams
from search_strategies.registry import STRATEGIES
from search_strategies.reward import (
    AGGREGATIONS,
    Aggregation,
    RewardModel,
    aggregate,
    aggregation_for,
    prefix_scores,
    with_reward_aggregation,
)
from tests.fakes import ScriptedPolicy, TableReward

#: The review's example: a wrong product, then steps that follow from it.
WRONG_FIRST_STEP = ["12 * 7 = 86.", "86 + 4 = 90.", "\\boxed{90}"]
ALL_RIGHT = ["12 * 7 = 84.", "84 + 4 = 88.", "\\boxed{88}"]
NOTHING_TO_CHECK = ["We add the two amounts.", "\\boxed{90}"]
NO_BACKEND = cast(PRMBackend, object())  # the constructors only keep it


@dataclass
class DeclaringReward(TableReward):
    """A table reward that declares the aggregation its scores are meant for."""

    default_aggregation: Any = "last"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_the_verifiers_default_does_not_hide_a_wrong_step() -> None:
    verifier = ArithmeticVerifier()
    scores = run(verifier.score("q", [WRONG_FIRST_STEP, NOTHING_TO_CHECK]))
    assert scores == [[0.0, 1.0, 0.5], [0.5, 0.5]]
    how = aggregation_for(verifier)
    assert aggregate(scores[0], how) == 0.0
    assert aggregate(scores[1], how) == 0.5
    assert aggregate(scores[0], "last") == aggregate(scores[1], "last")  # what "last" did


@pytest.mark.parametrize(
    ("reward", "expected"),
    [
        (ArithmeticVerifier(), "min"),
        (SelfJudge(ScriptedPolicy([])), "min"),
        (QwenPRM(NO_BACKEND), "last"),
        (TokenLogitPRM(NO_BACKEND, "math-shepherd"), "last"),
        (TokenLogitPRM(NO_BACKEND, "rlhflow"), "last"),
        (Renamed(ArithmeticVerifier(), "prm"), "min"),
        (Renamed(SelfJudge(ScriptedPolicy([])), "prm"), "min"),
        (Renamed(QwenPRM(NO_BACKEND), "prm"), "last"),
        (ContinueWithoutReward(ArithmeticVerifier()), "min"),
        (TableReward({}), "last"),  # declares nothing: the old default
    ],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_each_reward_declares_its_default(reward: RewardModel, expected: str) -> None:
    assert aggregation_for(reward) == expected


def test_a_declared_default_must_be_an_aggregation() -> None:
    with pytest.raises(ValueError, match="odd: unknown default aggregation 'max'"):
        aggregation_for(DeclaringReward({}, name="odd", default_aggregation="max"))


# --- the request's aggregation -------------------------------------------------

STRATEGY_NAMES = sorted(STRATEGIES)
#: Fields that make each strategy's parameters call a reward.
REWARD_FIELDS = {"best_of_n": {"selection": "weighted"}}


#: What `auto` is validated with on a server that has a table (server.auto_policy).
AUTO_POLICY = AutoPolicy(
    model="m",
    bins=[DifficultyBin(name="all", upper=1.0)],
    choices={"all": [AutoChoice(max_tokens=1, strategy="best_of_n", accuracy=0, problems=0)]},
)


def params_for(strategy: str, **fields: object) -> StrategyParams:
    """Parameters validated the way the server validates a request's fields."""
    body = {**REWARD_FIELDS.get(strategy, {}), **fields}
    return STRATEGIES[strategy].params_model.model_validate(
        body, context={"limits": ServerLimits(), "auto_policy": AUTO_POLICY}
    )


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
@pytest.mark.parametrize(
    ("reward", "expected"),
    [(ArithmeticVerifier(), "min"), (DeclaringReward({}, default_aggregation="last"), "last")],
)
def test_a_request_without_aggregation_gets_the_rewards_own(
    strategy: str, reward: RewardModel, expected: str
) -> None:
    params = params_for(strategy)
    resolved = with_reward_aggregation(params, reward)
    assert resolved.aggregation == expected
    assert resolved.model_dump(exclude={"aggregation"}) == params.model_dump(
        exclude={"aggregation"}
    )


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
@pytest.mark.parametrize("how", AGGREGATIONS)
def test_an_aggregation_the_request_names_wins(strategy: str, how: str) -> None:
    params = params_for(strategy, aggregation=how)
    assert with_reward_aggregation(params, ArithmeticVerifier()) is params


def test_without_a_reward_or_an_aggregation_field_nothing_changes() -> None:
    params = params_for("best_of_n")
    assert with_reward_aggregation(params, None) is params
    plain = StrategyParams()
    assert with_reward_aggregation(plain, ArithmeticVerifier()) is plain


# --- weighted ensembles ----------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("last", [0.5, 1.0, 0.0, 1.0]),
        ("min", [0.5, 0.5, 0.0, 0.0]),
        ("prod", [0.5, 0.5, 0.0, 0.0]),
        ("mean", [0.5, 0.75, 0.5, 0.625]),
    ],
)
def test_prefix_scores_aggregate_every_prefix(how: Aggregation, expected: list[float]) -> None:
    assert prefix_scores([0.5, 1.0, 0.0, 1.0], how) == pytest.approx(expected)
    assert prefix_scores([], how) == []


def prm(default: str = "last") -> DeclaringReward:
    """A PRM stand-in: 0.9, 0.8, 0.7 for the steps of both example solutions."""
    table = {
        step: score
        for steps in (WRONG_FIRST_STEP, ALL_RIGHT)
        for step, score in zip(steps, (0.9, 0.8, 0.7))
    }
    return DeclaringReward(table, name="learned-prm", default_aggregation=default)


def test_a_mixed_ensemble_is_each_members_own_aggregate_weighted() -> None:
    """PRM ("last") with the verifier ("min"): the mix wants "last", and its score is
    the weighted mean of the PRM's last score and the verifier's minimum."""
    members = [(prm(), 3.0), (ArithmeticVerifier(), 1.0)]
    ensemble = WeightedEnsemble(members)
    assert ensemble.default_aggregation == "last"
    solutions = [WRONG_FIRST_STEP, ALL_RIGHT, NOTHING_TO_CHECK]
    scores = run(ensemble.score("q", solutions))
    for steps, row in zip(solutions, scores):
        own = [
            aggregate(run(member.score("q", [steps]))[0], aggregation_for(member)) * weight
            for member, weight in members
        ]
        assert aggregate(row, "last") == pytest.approx(math.fsum(own) / 4.0)
    wrong, right = (aggregate(row, "last") for row in scores[:2])
    assert wrong == pytest.approx(0.75 * 0.7 + 0.25 * 0.0)
    assert right == pytest.approx(0.75 * 0.7 + 0.25 * 0.5)


def test_an_ensemble_of_like_members_keeps_the_plain_mean_and_their_default() -> None:
    judge = DeclaringReward({}, default=0.6, name="judge", default_aggregation="min")
    ensemble = WeightedEnsemble([(ArithmeticVerifier(), 1.0), (judge, 1.0)])
    assert ensemble.default_aggregation == "min"
    assert run(ensemble.score("q", [WRONG_FIRST_STEP])) == [pytest.approx([0.3, 0.8, 0.55])]

    prms = WeightedEnsemble([(prm(), 1.0), (TableReward({}, default=0.1), 1.0)])
    assert prms.default_aggregation == "last"
    assert run(prms.score("q", [WRONG_FIRST_STEP])) == [pytest.approx([0.5, 0.45, 0.4])]


def test_an_ensemble_member_can_be_named_in_a_renamed_wrapper() -> None:
    """`--prm-kind arithmetic` is the verifier renamed `prm`; it keeps "min"."""
    ensemble = WeightedEnsemble([(Renamed(ArithmeticVerifier(), "prm"), 1.0), (prm(), 1.0)])
    assert ensemble.default_aggregation == "last"
    row = run(ensemble.score("q", [WRONG_FIRST_STEP]))[0]
    assert row == pytest.approx([0.45, 0.4, 0.35])


# --- the server (needs the server/service.py wiring) ---------------------------


@pytest.mark.parametrize(
    ("fields", "reward", "expected"),
    [
        ({"selection": "weighted"}, "arithmetic", "min"),
        ({"selection": "weighted"}, "prm", "last"),
        ({"selection": "weighted", "aggregation": "last"}, "arithmetic", "last"),
    ],
)
def test_the_server_plans_a_search_with_the_rewards_own_aggregation(
    fields: dict[str, str], reward: str, expected: str
) -> None:
    from search_strategies.protocols import Problem
    from server.schemas import SearchOptions
    from server.service import PolicyBackend, SolveService

    rewards = {"arithmetic": ArithmeticVerifier(), "prm": prm()}
    service = SolveService(cast(PolicyBackend, ScriptedPolicy([])), ServerLimits(), "", rewards)
    plan = service.plan("best_of_n", fields, SearchOptions(reward=reward), Problem("q"))
    assert plan.params.aggregation == expected

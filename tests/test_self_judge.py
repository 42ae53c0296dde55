"""Self-judge logic on a scripted policy (the real-engine test is over HTTP)."""

from __future__ import annotations

import asyncio
import math

from reward_clients.self_judge import SelfJudge, judge_messages, probability_of_yes
from search_strategies.protocols import Completion
from tests.fakes import ScriptedPolicy


def first_token(alternatives: dict[str, float]) -> Completion:
    return Completion(
        token_ids=(1,),
        text="x",
        logprobs=(-0.1,),
        finish_reason="length",
        top_logprobs=({t: math.log(p) for t, p in alternatives.items()},),
    )


def test_yes_mass_against_no_mass() -> None:
    assert math.isclose(probability_of_yes(first_token({"Yes": 0.6, " no": 0.2, "So": 0.1})), 0.75)
    assert probability_of_yes(first_token({"So": 0.9})) == 0.5
    assert probability_of_yes(Completion((), "", (), "stop")) == 0.5


def test_every_step_of_every_solution_in_one_call() -> None:
    policy = ScriptedPolicy(["yes"])
    scores = asyncio.run(SelfJudge(policy).score("q", [["a", "b"], [], ["c"]]))
    assert [len(s) for s in scores] == [2, 0, 1]
    assert len(policy.calls) == 1 and policy.calls[0][0] == 3
    assert policy.calls[0][1].max_tokens == 1 and policy.calls[0][1].top_logprobs > 0


def test_judge_prompt_shows_earlier_steps_and_the_new_one() -> None:
    user = judge_messages("What is 2+2?", ["2+2 = 4", "So 4."], 1)[-1].content
    assert "2+2 = 4" in user and "New step:\nSo 4." in user

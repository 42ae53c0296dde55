"""Best-of-N subsampling picks what the server's selection picks for the same samples."""

from __future__ import annotations

import random

import pytest

from clients.bench.subsample import select, subsample
from search_strategies.best_of_n import select_by_reward, select_majority
from search_strategies.results import Candidate


def _response(samples: list[tuple[str | None, float, float, int]], **extra) -> dict:
    candidates = [
        {"text": "", "answer": a, "score": s, "mean_logprob": lp, "num_tokens": t,
         "finish_reason": "stop"}
        for a, s, lp, t in samples
    ]
    usage = {"prompt_tokens": 30, "generated_tokens": sum(t for *_, t in samples),
             "reward_calls": 1, "reward_tokens": 80}
    return {"candidates": candidates, "usage": usage, "stopped_reason": "completed",
            "answer": None, **extra}


# Four samples: "7" twice with low rewards, "9" once with the best reward, one answerless.
SAMPLES = [("7", 0.2, -0.5, 10), ("9", 0.9, -0.9, 20), ("7", 0.3, -0.4, 30), (None, 0.0, -0.1, 40)]


@pytest.mark.parametrize(
    ("selection", "n", "answer"),
    [
        ("majority", 1, "7"), ("majority", 2, "7"),  # a 1-1 tie: "7" is more likely
        ("majority", 4, "7"),
        ("weighted", 2, "9"), ("weighted", 4, "9"),  # 0.9 > 0.2 + 0.3
        ("max_reward", 1, "7"), ("max_reward", 4, "9"),
    ],
)
def test_picks_by_hand(selection: str, n: int, answer: str) -> None:
    (pick,) = subsample(_response(SAMPLES), (n,), (selection,))
    assert pick.answer == answer


def test_usage_is_what_a_direct_run_at_that_n_spends() -> None:
    picks = subsample(_response(SAMPLES), (1, 2, 4), ("majority", "weighted"))
    by = {(p.selection, p.n): p.usage for p in picks}
    assert by[("majority", 2)] == {"prompt_tokens": 30, "generated_tokens": 30,
                                   "reward_calls": 0, "reward_tokens": 0}
    assert by[("weighted", 2)]["reward_calls"] == 1 and by[("weighted", 2)]["reward_tokens"] == 40
    assert by[("weighted", 4)]["generated_tokens"] == 100


def test_reward_selections_fall_back_to_voting_when_the_server_did() -> None:
    response = _response(SAMPLES, stopped_reason="reward_budget")
    (pick,) = subsample(response, (4,), ("max_reward",))
    assert pick.answer == "7"


def test_random_sample_sets_agree_with_the_server_selection_functions() -> None:
    """Replaying from JSON (None logprobs, float scores) equals selecting the objects."""
    rng = random.Random(0)
    for _ in range(300):
        samples = [(rng.choice(["1", "2", "3", None]), round(rng.random(), 2),
                    rng.choice([None, -rng.random()]), rng.randint(1, 9)) for _ in range(8)]
        response = _response(samples)
        for size in (1, 2, 4, 8):
            pool = [Candidate("", a, float("-inf") if lp is None else lp, "stop", t, s)
                    for a, s, lp, t in samples[:size]]
            fresh = [Candidate(**vars(c)) for c in pool]
            assert select(response["candidates"][:size], "majority") == (
                select_majority(pool).answer)
            assert select(response["candidates"][:size], "weighted") == select_by_reward(
                fresh, [c.score for c in fresh], "weighted").answer

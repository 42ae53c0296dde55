"""Best-of-N subsampling picks what the server's selection picks for the same samples."""

from __future__ import annotations

import random

import pytest

from clients.bench.subsample import select, subsample
from search_strategies.best_of_n import select_by_reward, select_majority
from search_strategies.results import Candidate


def _response(samples: list[tuple[str | None, float, float, int]], **extra) -> dict:
    candidates = [
        {
            "text": "",
            "answer": a,
            "score": s,
            "mean_logprob": lp,
            "num_tokens": t,
            "finish_reason": "stop",
        }
        for a, s, lp, t in samples
    ]
    usage = {
        "prompt_tokens": 30,
        "generated_tokens": sum(t for *_, t in samples),
        "reward_calls": 1,
        "reward_tokens": 80,
    }
    return {
        "candidates": candidates,
        "usage": usage,
        "stopped_reason": "completed",
        "answer": None,
        **extra,
    }


# Four samples: "7" twice with low rewards, "9" once with the best reward, one answerless.
SAMPLES = [("7", 0.2, -0.5, 10), ("9", 0.9, -0.9, 20), ("7", 0.3, -0.4, 30), (None, 0.0, -0.1, 40)]


@pytest.mark.parametrize(
    ("selection", "n", "answer"),
    [
        ("majority", 1, "7"),
        ("majority", 2, "7"),  # a 1-1 tie: "7" is more likely
        ("majority", 4, "7"),
        ("weighted", 2, "9"),
        ("weighted", 4, "9"),  # 0.9 > 0.2 + 0.3
        ("max_reward", 1, "7"),
        ("max_reward", 4, "9"),
    ],
)
def test_picks_by_hand(selection: str, n: int, answer: str) -> None:
    (pick,) = subsample(_response(SAMPLES), (n,), (selection,))
    assert pick.answer == answer


# "7" twice with middling rewards, "9" once with the best; the second "7" came back
# from the server without a log-probability (JSON null).
SPLIT = [("7", 0.6, -0.5, 10), ("9", 0.9, -0.9, 20), ("7", 0.5, None, 30)]
# A 1-1 tie in votes and in rewards: only the log-probabilities decide, and a null
# one (read as -inf) loses to any number.
TIED = [("7", 0.5, None, 10), ("9", 0.5, -2.0, 10)]


@pytest.mark.parametrize(
    ("samples", "selection", "answer"),
    [
        pytest.param(SPLIT, "majority", "7", id="split-majority"),  # 2 votes to 1
        pytest.param(SPLIT, "weighted", "7", id="split-weighted"),  # 0.6 + 0.5 > 0.9
        pytest.param(SPLIT, "max_reward", "9", id="split-max_reward"),  # 0.9 alone
        pytest.param(TIED, "majority", "9", id="tied-majority"),
        pytest.param(TIED, "weighted", "9", id="tied-weighted"),
        pytest.param(TIED, "max_reward", "9", id="tied-max_reward"),
    ],
)
def test_picks_by_hand_where_the_selections_disagree(
    samples: list[tuple[str | None, float, float | None, int]], selection: str, answer: str
) -> None:
    (pick,) = subsample(_response(samples), (len(samples),), (selection,))
    assert pick.answer == answer


def test_usage_is_what_a_direct_run_at_that_n_spends() -> None:
    picks = subsample(_response(SAMPLES), (1, 2, 4), ("majority", "weighted"))
    by = {(p.selection, p.n): p.usage for p in picks}
    assert by[("majority", 2)] == {
        "prompt_tokens": 30,
        "generated_tokens": 30,
        "reward_calls": 0,
        "reward_tokens": 0,
    }
    assert by[("weighted", 2)]["reward_calls"] == 1 and by[("weighted", 2)]["reward_tokens"] == 40
    assert by[("weighted", 4)]["generated_tokens"] == 100


def test_reward_selections_fall_back_to_voting_when_the_server_did() -> None:
    response = _response(SAMPLES, stopped_reason="reward_budget")
    (pick,) = subsample(response, (4,), ("max_reward",))
    assert pick.answer == "7"


def test_replaying_json_candidates_picks_what_the_same_candidate_objects_pick() -> None:
    """Reading candidates back from JSON (null logprobs, float scores) loses nothing.

    Both sides call the server's selection functions, so this checks the JSON
    conversion and that `subsample` feeds them each selection; whether the
    selections pick the right answers is checked by hand above.
    """
    rng = random.Random(0)
    for _ in range(300):
        samples = [
            (
                rng.choice(["1", "2", "3", None]),
                round(rng.random(), 2),
                rng.choice([None, -rng.random()]),
                rng.randint(1, 9),
            )
            for _ in range(8)
        ]
        response = _response(samples)
        for size in (1, 2, 4, 8):
            pool = [
                Candidate("", a, float("-inf") if lp is None else lp, "stop", t, s)
                for a, s, lp, t in samples[:size]
            ]
            fresh = [Candidate(**vars(c)) for c in pool]
            assert select(response["candidates"][:size], "majority") == (
                select_majority(pool).answer
            )
            assert (
                select(response["candidates"][:size], "weighted")
                == select_by_reward(fresh, [c.score for c in fresh], "weighted").answer
            )

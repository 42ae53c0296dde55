"""Best-of-N curves for every N <= N_max from one best-of-N_max response.

As search-and-learn does, the first k samples of the N_max run stand in for a
best-of-k run: with a seed, the server's k samples ARE those first k (vLLM seeds
sample i with seed + i), so this is the same answer a direct best-of-k request
would return, at a fraction of the cost. Selection reuses the server's own pure
selection functions so that ties break exactly as in a direct run.

It needs the reward of every sample, so the N_max request must use a reward
selection (weighted or max_reward): the response's candidate scores are then
the rewards. A request with `selection=majority` only yields majority curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast, get_args

from search_strategies.best_of_n import Selection, select_by_reward, select_majority
from search_strategies.results import Candidate


@dataclass(frozen=True)
class Pick:
    """What best-of-`n` with `selection` answers, and what it would have cost."""

    selection: str
    n: int
    answer: str | None
    usage: dict[str, int]


def _candidate(data: dict[str, Any]) -> Candidate:
    logprob = data.get("mean_logprob")
    return Candidate(
        text="",
        answer=data.get("answer"),
        mean_logprob=float("-inf") if logprob is None else float(logprob),
        finish_reason=str(data.get("finish_reason", "")),
        num_tokens=int(data.get("num_tokens", 0)),
        score=float(data.get("score", 0.0)),
    )


def select(candidates: list[dict[str, Any]], selection: str) -> str | None:
    """The answer `selection` picks among response candidates (scores = rewards)."""
    pool = [_candidate(c) for c in candidates]
    if selection == "majority":
        chosen = select_majority(pool)
    elif selection in get_args(Selection):
        rewards = [c.score for c in pool]
        chosen = select_by_reward(pool, rewards, cast(Selection, selection))
    else:
        raise ValueError(f"unknown selection {selection!r}; expected one of {get_args(Selection)}")
    return chosen.answer if chosen else None


def subsample(
    response: dict[str, Any], sizes: tuple[int, ...], selections: tuple[str, ...]
) -> list[Pick]:
    """One `Pick` per selection and size, from the first `size` candidates.

    Usage is what a direct run would have spent: the first k samples' tokens, the
    same prompt, one reward call for reward selections (its tokens pro rata).
    When the server ran out of reward calls and fell back to voting, so do the
    reward selections here, as a direct run would.
    """
    candidates = response["candidates"]
    usage = response["usage"]
    largest = len(candidates)
    reward_ok = response.get("stopped_reason") != "reward_budget"
    picks = []
    for selection in selections:
        uses_reward = selection != "majority"
        for size in sizes:
            if size > largest:
                continue  # the server returned fewer samples (token budget)
            first = candidates[:size]
            replay = selection if (reward_ok or not uses_reward) else "majority"
            picks.append(
                Pick(
                    selection=selection,
                    n=size,
                    answer=select(first, replay),
                    usage={
                        "prompt_tokens": usage["prompt_tokens"],
                        "generated_tokens": sum(int(c["num_tokens"]) for c in first),
                        "reward_calls": usage["reward_calls"] if uses_reward else 0,
                        "reward_tokens": (
                            round(usage["reward_tokens"] * size / largest) if uses_reward else 0
                        ),
                    },
                )
            )
    return picks

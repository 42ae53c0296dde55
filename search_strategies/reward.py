"""The Reward interface the search strategies consume, and the checks around it.

A reward model scores every step of every candidate solution. Strategies only ever
see numbers in [0, 1]; `validate_scores` is the one gate a backend's raw output goes
through, so a PRM that returns NaN or the wrong shape fails loudly with its name on
the error instead of silently steering a search. Like `protocols.py`, this module
imports neither FastAPI nor vLLM.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import (
    Literal,
    Protocol,
    TypeVar,
    cast,
    get_args,
    runtime_checkable,
)

from pydantic import BaseModel

Aggregation = Literal["last", "min", "prod", "mean"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


@runtime_checkable
class RewardModel(Protocol):
    """Scores the steps of candidate solutions to one question.

    One `score` call carries every candidate the strategy wants judged, so an
    implementation can batch them into a single model call.

    A client may also declare `default_aggregation`, the `Aggregation` its step scores
    are meant for (read through `aggregation_for`): "last" for a PRM trained on
    prefixes, whose score at the last step already judges every step; "min" for a
    judge that scores each step on its own, whose last score says nothing about the
    steps before it. It is optional (a client without it gets "last", the old
    default), so wrappers and test doubles need not declare it.
    """

    @property
    def name(self) -> str:
        """Backend name; it appears in errors, logs and usage reports."""
        ...

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One score in [0, 1] per step of every solution, in the same shape."""
        ...


class RewardError(RuntimeError):
    """A reward backend returned something a strategy must not act on."""


class RewardUnavailable(RewardError):
    """The reward backend could not be reached or did not answer in time.

    Unlike a malformed answer, this is the one failure a request may choose to
    survive (`reward_fallback: "none"`): the search then goes on without reward.
    """


class RewardTokens:
    """Tokens the reward backends read during one metered `score` call."""

    def __init__(self) -> None:
        self.count = 0


_reward_tokens: ContextVar[RewardTokens | None] = ContextVar("reward_tokens", default=None)


def count_reward_tokens(tokens: int) -> None:
    """Called by a reward client for the tokens its backend read in this call.

    A client is shared by concurrent requests, so it cannot keep a per-request
    counter itself; the count goes to whichever metered call is running in this
    task's context (a no-op outside one, e.g. in a benchmark).
    """
    meter = _reward_tokens.get()
    if meter is not None:
        meter.count += tokens


@contextmanager
def metering_reward_tokens() -> Iterator[RewardTokens]:
    """Collect `count_reward_tokens` reports made inside the `with` block."""
    meter = RewardTokens()
    reset = _reward_tokens.set(meter)
    try:
        yield meter
    finally:
        _reward_tokens.reset(reset)


def aggregation_for(reward: object) -> Aggregation:
    """The aggregation `reward` declares for its step scores ("last" when it says none).

    Used when a request leaves `aggregation` unset: the right way to combine step
    scores is a property of the reward, not of the request (see `RewardModel`).
    """
    how = getattr(reward, "default_aggregation", "last")
    if how not in AGGREGATIONS:
        name = getattr(reward, "name", type(reward).__name__)
        raise ValueError(
            f"{name}: unknown default aggregation {how!r}; expected one of {AGGREGATIONS}"
        )
    return cast(Aggregation, how)  # checked against AGGREGATIONS just above


ParamsT = TypeVar("ParamsT", bound=BaseModel)


def with_reward_aggregation(params: ParamsT, reward: RewardModel | None) -> ParamsT:
    """`params` with `aggregation` set to `reward`'s own default unless the request set it.

    Strategy parameters keep "last" as their library default; the server calls this
    once the reward is known, so a request without `aggregation` gets the one its
    reward wants, and a request that names one keeps it.
    """
    if (
        reward is None
        or "aggregation" not in type(params).model_fields
        or "aggregation" in params.model_fields_set
    ):
        return params
    return params.model_copy(update={"aggregation": aggregation_for(reward)})


def prefix_scores(step_scores: Sequence[float], how: Aggregation) -> list[float]:
    """Per step, `how` over the steps up to it: what a PRM trained on prefixes reports.

    Turns a per-step judge's scores into prefix scores (with "min", a wrong step
    keeps every later prefix down), so they can be mixed with a PRM's and the mix
    read with "last".
    """
    return [aggregate(step_scores[: end + 1], how) for end in range(len(step_scores))]


def aggregate(step_scores: Sequence[float], how: Aggregation = "last") -> float:
    """Collapse per-step scores into one solution score.

    "last" trusts the PRM's judgement of the whole prefix (what PRMs are trained
    for); "min" says a chain is as good as its weakest step; "prod" treats steps as
    independent chances of being right; "mean" is the lenient average.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")
    if len(step_scores) == 0:
        raise ValueError("cannot aggregate an empty list of step scores: a solution has no steps")
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    return math.fsum(step_scores) / len(step_scores)


def _as_score(value: object) -> float | None:
    """`value` as a float when it is a finite real in [0, 1], else None."""
    # bool is an int, but a backend returning True is a bug, not a score of 1.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    score = float(value)
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return None
    return score


def validate_scores(
    scores: object, solutions: Sequence[Sequence[str]], backend: str
) -> list[list[float]]:
    """Check a backend's raw scores against the solutions it was asked to judge.

    Returns fresh lists of plain floats. Raises `RewardError`, naming `backend` and
    the offending solution and step, on a shape mismatch or a value that is not a
    finite number in [0, 1].
    """
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
        raise RewardError(f"{backend}: expected a list of step-score lists, got {scores!r}")
    if len(scores) != len(solutions):
        raise RewardError(
            f"{backend}: expected scores for {len(solutions)} solutions, got {len(scores)}"
        )
    checked: list[list[float]] = []
    for i, (row, steps) in enumerate(zip(scores, solutions)):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise RewardError(
                f"{backend}: solution {i}: expected a list of step scores, got {row!r}"
            )
        if len(row) != len(steps):
            raise RewardError(
                f"{backend}: solution {i}: expected {len(steps)} step scores, got {len(row)}"
            )
        out: list[float] = []
        for j, value in enumerate(row):
            score = _as_score(value)
            if score is None:
                raise RewardError(
                    f"{backend}: solution {i}, step {j}: score {value!r} is not a finite "
                    "number in [0, 1]"
                )
            out.append(score)
        checked.append(out)
    return checked

"""Rewards built from other rewards: a weighted ensemble, a rename, a fallback.

They only see the `RewardModel` interface, so they compose with every client.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from search_strategies.reward import (
    Aggregation,
    RewardModel,
    RewardUnavailable,
    aggregation_for,
    prefix_scores,
    validate_scores,
)

#: Score every step gets when a request continues without its reward backend.
NO_REWARD_SCORE = 0.5


class WeightedEnsemble:
    """Weighted mean of several clients' step scores, all asked concurrently.

    Each member's answer is validated under its own name first, so a broken member
    is named in the error rather than hidden inside the mean.

    Its default aggregation follows the members': when they all want the same one,
    the step scores are the plain weighted mean and the ensemble wants that one too.
    When they differ (a PRM that wants "last" beside the verifier that wants "min"),
    no aggregation of the plain mean suits both, so each member's scores are first
    made prefix scores under its own default (`prefix_scores`) and the ensemble wants
    "last": a solution's score is then the weighted mean of each member's own
    aggregate, and a wrong step one member found is not hidden by another's last score.
    """

    def __init__(self, members: Sequence[tuple[RewardModel, float]], name: str = "ensemble"):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for member, weight in members:
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(
                    f"weight of {member.name!r} must be a positive number, got {weight}"
                )
        self.members = list(members)
        self._name = name
        self._total = math.fsum(w for _, w in members)
        self._own: list[Aggregation] = [aggregation_for(m) for m, _ in members]
        self._mixed = len(set(self._own)) > 1

    @property
    def default_aggregation(self) -> Aggregation:
        return "last" if self._mixed else self._own[0]

    @property
    def name(self) -> str:
        return self._name

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        answers = await asyncio.gather(
            *(member.score(question, solutions) for member, _ in self.members)
        )
        checked = [
            validate_scores(raw, solutions, member.name)
            for raw, (member, _) in zip(answers, self.members)
        ]
        if self._mixed:
            checked = [
                [prefix_scores(row, how) for row in rows] for rows, how in zip(checked, self._own)
            ]
        return [
            [
                math.fsum(w * scores[i][j] for scores, (_, w) in zip(checked, self.members))
                / self._total
                for j in range(len(steps))
            ]
            for i, steps in enumerate(solutions)
        ]


class Renamed:
    """A client under the name the server configured it as ("prm" for a verifier)."""

    def __init__(self, reward: RewardModel, name: str) -> None:
        self.inner = reward
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_aggregation(self) -> Aggregation:
        return aggregation_for(self.inner)

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return await self.inner.score(question, solutions)


class ContinueWithoutReward:
    """Per request: if the backend is unreachable, score every step `NO_REWARD_SCORE`.

    Uniform scores leave the strategy unguided (weighted best-of-N becomes a vote
    count, max-reward a log-probability tie-break) instead of failing the request.
    After the first failure the backend is not asked again for this request, so a
    search does not wait for one timeout per wave. `failure` says what happened.
    """

    def __init__(self, reward: RewardModel) -> None:
        self.inner = reward
        self.failure: str | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def default_aggregation(self) -> Aggregation:
        return aggregation_for(self.inner)

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if self.failure is None:
            try:
                return await self.inner.score(question, solutions)
            except RewardUnavailable as error:
                self.failure = str(error)
        return [[NO_REWARD_SCORE] * len(steps) for steps in solutions]

"""What every strategy returns: the answer, the candidates it weighed, and its cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from search_strategies.budget import StopReason, Usage


@dataclass
class Candidate:
    """One complete (or budget-truncated) solution a strategy considered."""

    text: str
    answer: str | None
    mean_logprob: float
    finish_reason: str
    num_tokens: int
    #: Selection score in [0, 1]; what it means depends on the selection rule.
    score: float = 0.0


@dataclass
class TraceNode:
    """A node of the search tree as returned with `return_trace`."""

    id: int
    parent: int | None
    text: str
    num_tokens: int
    chosen: bool = False
    #: Reward of this node's step (or whole solution), when one was computed.
    score: float | None = None
    #: MCTS statistics; None for strategies that do not keep them.
    visits: int | None = None
    value: float | None = None
    #: Particle filtering: the share of the population's weight this node held when
    #: last weighed (summed over the particles on it); None for other strategies.
    weight: float | None = None


@dataclass
class SearchResult:
    """A strategy's answer plus everything a client needs to judge it."""

    chosen: Candidate | None
    candidates: list[Candidate]
    usage: Usage
    stopped_reason: StopReason
    trace: list[TraceNode] | None = field(default=None)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> str | None:
        """The chosen solution's extracted final answer."""
        return self.chosen.answer if self.chosen else None

"""Step labels for process-reward training: is each step of a sample on a right path?

`outcome` (built): every step carries its sample's final grade. It is free (no
request) and is the usual baseline, but noisy in one direction: a right step in a
solution that later goes wrong is labelled wrong. `mc` (not built yet) estimates
each step's label from K rollouts continued from it (Math-Shepherd's "hard"
estimate: right if any rollout reaches the gold answer); it will read the collected
rows' steps and write its labels to a file of their own, keyed by (problem, cell,
sample index), so the collected rows need no change.
"""

from __future__ import annotations

from collections.abc import Callable

from learning.sources import Sample, SolvedProblem

#: The labels of one sample's steps, one bool per step.
StepLabeler = Callable[[SolvedProblem, Sample], list[bool]]
LABEL_METHODS = ("outcome", "mc")


def outcome_labels(problem: SolvedProblem, sample: Sample) -> list[bool]:
    """Every step is labelled with the sample's grade."""
    return [sample.correct] * len(sample.steps)


def labeler(method: str) -> StepLabeler:
    """The labeller for `--labels METHOD`; `mc` is refused with what to use meanwhile."""
    if method == "outcome":
        return outcome_labels
    if method == "mc":
        raise ValueError(
            "--labels mc (Monte-Carlo rollouts) is not built yet; use --labels outcome"
        )
    raise ValueError(f"unknown --labels {method!r}; known: {', '.join(LABEL_METHODS)}")

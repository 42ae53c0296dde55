"""Step labels for process-reward training: is each step of a sample on a right path?

`outcome`: every step carries its sample's final grade. It is free (no request) and
is the usual baseline, but noisy in one direction: a right step in a solution that
later goes wrong is labelled wrong. `mc` / `mc-soft`: Monte-Carlo labels from K
rollouts continued from each step (`ponder learn label`, `learning.mc_labels`):
right if any rollout reaches the gold answer (Math-Shepherd's hard estimate), or if
at least half do (`mc-soft`). Samples without MC labels are left out of an `mc`
export (the caller says how many).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from learning.mc_labels import ESTIMATES, read_mc_labels
from learning.sources import Sample, SolvedProblem

#: The labels of one sample's steps, one bool per step; None: this sample has none.
StepLabeler = Callable[[SolvedProblem, Sample], list[bool] | None]
LABEL_METHODS = ("outcome", *ESTIMATES)


def outcome_labels(problem: SolvedProblem, sample: Sample) -> list[bool]:
    """Every step is labelled with the sample's grade."""
    return [sample.correct] * len(sample.steps)


def labeler(method: str, folder: Path | None = None) -> StepLabeler:
    """The labeller for `--labels METHOD`; MC labels are read from `folder`."""
    if method == "outcome":
        return outcome_labels
    if method in ESTIMATES:
        if folder is None:
            raise ValueError(f"--labels {method} reads the folder's MC labels; give the folder")
        table = read_mc_labels(folder, ESTIMATES[method])

        def mc_labels(problem: SolvedProblem, sample: Sample) -> list[bool] | None:
            labels = table.get((problem.problem_id, problem.cell, sample.index))
            return labels if labels is not None and len(labels) == len(sample.steps) else None

        return mc_labels
    raise ValueError(f"unknown --labels {method!r}; known: {', '.join(LABEL_METHODS)}")

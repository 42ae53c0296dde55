"""What best-of-N's samples hold, beside what selection picked from them.

Accuracy says what a selection rule found; coverage says what was there to find.
From each best-of-N_max source row (the one that keeps every sample), per dataset:
pass@k, the share of problems where one of the first k samples is right (what a
perfect verifier would score at N = k), the share of samples that are right, and
how well the reward separates right samples from wrong ones (mean reward of each,
and AUROC: the chance that a random right sample outscores a random wrong one).
The gap between pass@k and the best selection's accuracy is what a better reward
could win.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from clients.bench.datasets import guess_grader
from clients.bench.grading import grade
from clients.bench.store import Row


@dataclass(frozen=True)
class CoverageRow:
    dataset: str
    strategy: str
    k: int
    problems: int
    pass_at_k: float
    #: Over the first k samples of every problem.
    right_sample_share: float
    mean_reward_right: float | None
    mean_reward_wrong: float | None
    reward_auroc: float | None


def sample_correct(row: Row, sample: dict[str, Any]) -> bool:
    """A sample's grade: stored by the sweep, or (older files) graded from the gold."""
    if "correct" in sample:
        return bool(sample["correct"])
    gold = str(row["gold"])
    return grade(guess_grader(gold), gold, sample.get("answer")).correct


def auroc(right: list[float], wrong: list[float]) -> float | None:
    """P(a right sample's reward > a wrong one's), ties counting half."""
    if not right or not wrong:
        return None
    ordered = sorted(wrong)
    wins = 0.0
    for score in right:
        below, not_above = bisect_left(ordered, score), bisect_right(ordered, score)
        wins += below + (not_above - below) / 2
    return wins / (len(right) * len(wrong))


def coverage(rows: Iterable[Row]) -> list[CoverageRow]:
    """One row per dataset, strategy and k = 1, 2, 4, ... up to the samples kept."""
    sources: dict[tuple[str, str], list[tuple[Row, list[bool]]]] = defaultdict(list)
    for row in rows:
        if row.get("samples"):
            graded = [sample_correct(row, s) for s in row["samples"]]
            sources[(row["dataset"], str(row["label"]).split("/")[0])].append((row, graded))
    table = []
    for (dataset, strategy), problems in sorted(sources.items()):
        largest = min(len(graded) for _, graded in problems)
        k = 1
        while k <= largest:
            right: list[float] = []
            wrong: list[float] = []
            for row, graded in problems:
                for sample, ok in zip(row["samples"][:k], graded[:k]):
                    (right if ok else wrong).append(float(sample.get("score") or 0.0))
            table.append(
                CoverageRow(
                    dataset=dataset,
                    strategy=strategy,
                    k=k,
                    problems=len(problems),
                    pass_at_k=fmean(any(graded[:k]) for _, graded in problems),
                    right_sample_share=len(right) / (len(right) + len(wrong)),
                    mean_reward_right=fmean(right) if right else None,
                    mean_reward_wrong=fmean(wrong) if wrong else None,
                    reward_auroc=auroc(right, wrong),
                )
            )
            k *= 2
    return table


def coverage_table(table: list[CoverageRow]) -> str:
    """Markdown, for the terminal and docs/benchmarks.md."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines = [
        "| dataset | strategy | k | problems | pass@k | right samples | mean reward "
        "right / wrong | reward AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c.dataset} | {c.strategy} | {c.k} | {c.problems} | {c.pass_at_k:.2f} | "
        f"{c.right_sample_share:.2f} | {number(c.mean_reward_right)} / "
        f"{number(c.mean_reward_wrong)} | {number(c.reward_auroc)} |"
        for c in table
    ]
    return "\n".join(lines)

"""Training problems must never be evaluation problems.

A PRM or policy trained on the problems it is then benchmarked on would look better
than it is. The arithmetic generator is seeded, so a training set drawn with
another seed can still contain a question of the evaluation set word for word (the
level-1 space is small: about 3 in 1,000 collide); the check therefore compares
both problem ids and question texts (whitespace and case folded).

The default evaluation sets are the published sweeps' (see the `commands.txt` in
`clients/bench/published/*/`): 100 level-1 arithmetic problems with the
generator's default seed, and 50 GSM8K test problems sampled with seed 1. Both are
checked whatever the training dataset, which also catches a JSONL file that
contains GSM8K test questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clients.bench.datasets import BenchProblem, JsonlFields, Subset, load_dataset

#: (dataset, subset) of each published evaluation set.
PUBLISHED_EVAL: tuple[tuple[str, Subset], ...] = (
    ("arithmetic", Subset(limit=100, levels=(1,))),
    ("gsm8k", Subset(limit=50, seed=1)),
)


def normalise_question(text: str) -> str:
    """Questions compare equal when they differ only in whitespace or case."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class EvalSet:
    """What must not be trained on: ids and (normalised) question texts."""

    description: str
    ids: frozenset[str]
    questions: frozenset[str]

    @property
    def size(self) -> int:
        return max(len(self.ids), len(self.questions))


@dataclass(frozen=True)
class Overlap:
    """The training problems that are also evaluation problems, and how they matched."""

    problems: tuple[BenchProblem, ...]
    by_id: int
    by_question: int

    def message(self, train_count: int, eval_set: EvalSet) -> str:
        return (
            f"{len(self.problems)} of {train_count} training problems overlap the evaluation "
            f"set ({eval_set.description}; {self.by_id} by id, {self.by_question} by question "
            "text)"
        )


def eval_set_of(problems: list[BenchProblem], description: str) -> EvalSet:
    return EvalSet(
        description,
        frozenset(p.id for p in problems),
        frozenset(normalise_question(p.question) for p in problems),
    )


def published_eval_set() -> EvalSet:
    """The published sweeps' problems (arithmetic-100 and gsm8k-50)."""
    problems: list[BenchProblem] = []
    names = []
    for name, subset in PUBLISHED_EVAL:
        problems += load_dataset(name, subset)
        names.append(_describe(name, subset))
    return eval_set_of(problems, "published: " + " + ".join(names))


def eval_set_from_spec(
    datasets: list[str], subset: Subset, fields: JsonlFields = JsonlFields()
) -> EvalSet:
    """An evaluation set named like a bench run (`--eval-dataset/--eval-seed/...`)."""
    problems: list[BenchProblem] = []
    for name in datasets:
        problems += load_dataset(name, subset, fields)
    return eval_set_of(problems, " + ".join(_describe(n, subset) for n in datasets))


def eval_set_from_file(path: Path) -> EvalSet:
    """`--eval-ids FILE`: one problem id a line, or a JSONL file (a bench `results.jsonl`
    works) whose rows carry `problem_id` (or `id`) and, if present, `question`.

    Only what the file holds can be compared: a file of ids alone cannot catch a
    training question that equals an evaluation question under another id.
    """
    ids: set[str] = set()
    questions: set[str] = set()
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        if not line.startswith("{"):
            ids.add(line)
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON row ({error})") from None
        problem_id = row.get("problem_id", row.get("id"))
        if problem_id is None:
            raise ValueError(f"{path}:{number}: a row needs 'problem_id' or 'id'")
        ids.add(str(problem_id))
        if row.get("question"):
            questions.add(normalise_question(str(row["question"])))
    if not ids:
        raise ValueError(f"{path}: no evaluation problem ids")
    return EvalSet(f"ids in {path}", frozenset(ids), frozenset(questions))


def find_overlap(train: list[BenchProblem], eval_set: EvalSet) -> Overlap:
    """Training problems whose id or question text is in `eval_set`."""
    overlapping = []
    by_id = by_question = 0
    for problem in train:
        same_id = problem.id in eval_set.ids
        same_question = normalise_question(problem.question) in eval_set.questions
        by_id += same_id
        by_question += same_question
        if same_id or same_question:
            overlapping.append(problem)
    return Overlap(tuple(overlapping), by_id, by_question)


def _describe(name: str, subset: Subset) -> str:
    parts = [name]
    if subset.levels:
        parts.append("levels " + ",".join(map(str, subset.levels)))
    if subset.limit is not None:
        parts.append(f"limit {subset.limit}")
    parts.append("default seed" if subset.seed is None else f"seed {subset.seed}")
    return " ".join(parts)

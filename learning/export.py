"""Collected samples as TRL dataset files: stepwise supervision, preference pairs, SFT.

Formats follow TRL's "Dataset formats and types"
(https://huggingface.co/docs/trl/dataset_formats):
- `prm`: stepwise supervision, standard format, what `PRMTrainer` takes:
  `{"prompt": question, "completions": [step, ...], "labels": [bool, ...]}`, one
  record per sample (TRL's PRM data, e.g. trl-lib/math_shepherd, is laid out so).
- `dpo`: preference, conversational format (`DPOTrainer`):
  `{"prompt": [system, user], "chosen": [assistant], "rejected": [assistant]}`.
  Pairing: per problem, right and wrong samples each in sample order, the i-th
  right with the i-th wrong, so every sample is used at most once and a problem
  gives min(#right, #wrong) pairs; problems with no right or no wrong sample give
  none.
- `sft`: conversational language modelling (`SFTTrainer`):
  `{"messages": [system, user, assistant]}`, one per right sample.
Samples with the same text in one problem count once (small models repeat
themselves; a repeated sample would weigh twice), and empty samples are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from learning.labels import StepLabeler
from learning.sources import Sample, SolvedProblem

Record = dict[str, Any]
FORMATS = ("prm", "dpo", "sft")


def distinct_samples(problem: SolvedProblem) -> list[Sample]:
    """The problem's non-empty samples, each text once (its first occurrence)."""
    seen: set[str] = set()
    kept = []
    for sample in problem.samples:
        if sample.text.strip() and sample.text not in seen:
            seen.add(sample.text)
            kept.append(sample)
    return kept


def balanced(problems: Sequence[SolvedProblem], wrong_per_right: float) -> list[SolvedProblem]:
    """The problems with every right sample and at most `wrong_per_right` wrong samples
    per right one: first the wrong samples of problems that also have a right one (the
    contrasts a reward must learn), then the others, each group in file order.

    Outcome labels on a weak policy are mostly "wrong"; this keeps the training set
    from being spent on easy negatives.
    """
    right = sum(s.correct for p in problems for s in distinct_samples(p))
    budget = int(wrong_per_right * right)
    contrast = [p for p in problems if any(s.correct for s in p.samples)]
    others = [p for p in problems if not any(s.correct for s in p.samples)]
    kept: set[tuple[str, str, int]] = set()
    for problem in contrast + others:
        for sample in distinct_samples(problem):
            if not sample.correct and budget > 0:
                kept.add((problem.problem_id, problem.cell, sample.index))
                budget -= 1
    return [
        replace(
            p,
            samples=tuple(
                s for s in p.samples if s.correct or (p.problem_id, p.cell, s.index) in kept
            ),
        )
        for p in problems
    ]


def chat_prompt(problem: SolvedProblem) -> list[dict[str, str]]:
    """The messages the policy was prompted with (as the server builds them)."""
    return [
        {"role": "system", "content": problem.system_prompt},
        {"role": "user", "content": problem.question},
    ]


def _assistant(sample: Sample) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": sample.text}]


def prm_records(problems: Iterable[SolvedProblem], label: StepLabeler) -> Iterator[Record]:
    for problem in problems:
        for sample in distinct_samples(problem):
            labels = label(problem, sample) if sample.steps else None
            if labels is not None:
                yield {
                    "prompt": problem.question,
                    "completions": list(sample.steps),
                    "labels": labels,
                }


def preference_pairs(problem: SolvedProblem) -> list[tuple[Sample, Sample]]:
    """(right, wrong) pairs: the i-th right sample with the i-th wrong one."""
    samples = distinct_samples(problem)
    right = [s for s in samples if s.correct]
    wrong = [s for s in samples if not s.correct]
    return list(zip(right, wrong))


def dpo_records(problems: Iterable[SolvedProblem]) -> Iterator[Record]:
    for problem in problems:
        for chosen, rejected in preference_pairs(problem):
            yield {
                "prompt": chat_prompt(problem),
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
            }


def sft_records(problems: Iterable[SolvedProblem]) -> Iterator[Record]:
    for problem in problems:
        for sample in distinct_samples(problem):
            if sample.correct:
                yield {"messages": chat_prompt(problem) + _assistant(sample)}


def records(fmt: str, problems: list[SolvedProblem], label: StepLabeler) -> Iterator[Record]:
    """The records of format `fmt` (`prm` uses `label` for its steps)."""
    makers: dict[str, Callable[[], Iterator[Record]]] = {
        "prm": lambda: prm_records(problems, label),
        "dpo": lambda: dpo_records(problems),
        "sft": lambda: sft_records(problems),
    }
    if fmt not in makers:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return makers[fmt]()


@dataclass(frozen=True)
class Written:
    path: Path
    records: int


def write_jsonl(path: Path, rows: Iterable[Record], overwrite: bool = False) -> Written:
    """Write `rows` as JSON lines, all or nothing (a temporary file renamed into place).

    An existing file is refused unless `overwrite`: an export is cheap to redo but a
    training file silently replaced under a running job is not. No records is an
    error, not an empty file (a trainer would fail on it later, less clearly).
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; --out names a .jsonl file")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    if count == 0:
        temporary.unlink()
        raise ValueError(f"no records to write to {path}")
    os.replace(temporary, path)
    return Written(path, count)

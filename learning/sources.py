"""Reads a collect folder, or a `ponder bench --keep-texts` folder, as solved problems.

Export works on one shape whatever made the folder: a problem (question, system
prompt, gold) with its graded samples, each with its text and steps. A collect
folder stores exactly that. A bench folder stores it only in the best-of-N source
rows of a run made with `--keep-texts` (without it the bench keeps each sample's
answer, score and grade but no text, which cannot be trained on); its steps are cut
here with the server's `split_steps`, and its prompt is the server's default system
prompt unless told otherwise, because the bench sends none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.bench.store import RESULTS_NAME as BENCH_RESULTS_NAME, Row, read_rows
from learning.records import COLLECTED_NAME, DEFAULT_SYSTEM_PROMPT, step_delimiter
from search_strategies.steps import split_steps


@dataclass(frozen=True)
class Sample:
    index: int
    text: str
    steps: tuple[str, ...]
    correct: bool
    answer: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class SolvedProblem:
    """One request's problem and its graded samples."""

    dataset: str
    problem_id: str
    cell: str
    question: str
    system_prompt: str
    gold: str
    samples: tuple[Sample, ...]


@dataclass
class Folder:
    """What a folder holds, and what of it could not be used (said, not hidden)."""

    kind: str  # "collect" or "bench"
    problems: list[SolvedProblem]
    notes: list[str] = field(default_factory=list)


def load_folder(path: Path, system_prompt: str | None = None) -> Folder:
    """The solved problems of a collect or bench folder; `ValueError` says what is wrong.

    `system_prompt` is used for rows that do not record theirs (bench rows).
    """
    if not path.is_dir():
        raise ValueError(
            f"{path} is not a folder (give a `ponder learn collect` or `ponder bench` --out folder)"
        )
    collected, bench = path / COLLECTED_NAME, path / BENCH_RESULTS_NAME
    if collected.exists():
        kind, rows = "collect", read_rows(collected)
    elif bench.exists():
        kind, rows = "bench", [r for r in read_rows(bench) if "samples" in r]
    else:
        raise ValueError(
            f"{path} has neither {COLLECTED_NAME} (ponder learn collect) nor "
            f"{BENCH_RESULTS_NAME} (ponder bench)"
        )
    if not rows:
        what = collected if kind == "collect" else f"{bench} (no best-of-N rows with samples)"
        raise ValueError(f"nothing to export: no rows in {what}")
    folder = Folder(kind, [])
    textless = 0
    for number, row in enumerate(rows, 1):
        try:
            if not all("text" in s for s in row["samples"]):
                textless += 1
                continue
            folder.problems.append(_solved(row, system_prompt))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(
                f"{path}: row {number} is not a collected row (missing or malformed {error})"
            ) from None
    if textless:
        folder.notes.append(
            f"{textless} rows keep no sample texts and were skipped"
            + (" (rerun `ponder bench` with --keep-texts to keep them)" if kind == "bench" else "")
        )
    if not folder.problems:
        raise ValueError(f"nothing to export from {path}: " + "; ".join(folder.notes))
    if kind == "bench" and system_prompt is None:
        folder.notes.append("bench rows record no system prompt: assumed the server default")
    return folder


def _solved(row: Row, system_prompt: str | None) -> SolvedProblem:
    delimiter = step_delimiter(row.get("params") or {})
    return SolvedProblem(
        dataset=str(row["dataset"]),
        problem_id=str(row["problem_id"]),
        cell=str(row["cell"]),
        question=str(row["question"]),
        system_prompt=row.get("system_prompt") or system_prompt or DEFAULT_SYSTEM_PROMPT,
        gold=str(row["gold"]),
        samples=tuple(_sample(index, s, delimiter) for index, s in enumerate(row["samples"])),
    )


def _sample(index: int, data: dict[str, Any], delimiter: str) -> Sample:
    text = str(data["text"])
    steps = data.get("steps")
    return Sample(
        index=int(data.get("index", index)),
        text=text,
        steps=tuple(steps) if steps is not None else tuple(split_steps(text, delimiter)),
        correct=bool(data["correct"]),
        answer=data.get("answer"),
        score=data.get("score"),
    )

"""Benchmark problems: GSM8K, MATH-500, generated arithmetic, or any JSONL file.

Every source becomes a list of `BenchProblem` with a stable id (so resumed runs and
later reports line up) and the grader its gold answer needs.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clients.bench.arithmetic import LEVELS, generate
from search_strategies.answers import normalize_answer

Grader = Literal["numeric", "math"]
DATA_DIR = Path(__file__).resolve().parent / "data"
BUILTIN = ("gsm8k", "math500", "arithmetic")
#: Generated problems when `--limit` is not given for `arithmetic`.
DEFAULT_ARITHMETIC_COUNT = 100


@dataclass(frozen=True)
class BenchProblem:
    dataset: str
    id: str
    question: str
    gold: str
    grader: Grader
    level: int | None = None


@dataclass(frozen=True)
class JsonlFields:
    """Field names of a user's JSONL file (`--question-field` etc.)."""

    question: str = "question"
    answer: str = "answer"
    id: str | None = None
    level: str | None = None


@dataclass(frozen=True)
class Subset:
    """Which problems to take: `limit` of them, at `levels`, sampled with `seed`.

    Without a seed, file datasets give their first `limit` problems; with one, a
    seeded random sample. For `arithmetic` the seed picks the generated problems
    (default 0) and levels are cycled: problem i has level levels[i % len(levels)].
    """

    limit: int | None = None
    levels: tuple[int, ...] | None = None
    seed: int | None = None


def load_dataset(
    name: str,
    subset: Subset = Subset(),
    fields: JsonlFields = JsonlFields(),
    grader: Grader | None = None,
) -> list[BenchProblem]:
    """Problems of dataset `name` (a built-in name or a JSONL path)."""
    if name == "arithmetic":
        return _arithmetic(subset)
    if name == "gsm8k":
        rows = _read_jsonl(DATA_DIR / "gsm8k_test.jsonl")
        problems = [
            BenchProblem("gsm8k", f"gsm8k-{i}", r["question"], gsm8k_gold(r["answer"]), "numeric")
            for i, r in enumerate(rows)
        ]
    elif name == "math500":
        rows = _read_jsonl(DATA_DIR / "math500_test.jsonl")
        problems = [
            BenchProblem(
                "math500", f"math500-{i}", r["problem"], str(r["answer"]), "math", int(r["level"])
            )
            for i, r in enumerate(rows)
        ]
    else:
        problems = _from_file(Path(name), fields, grader)
    return _take(problems, subset)


def gsm8k_gold(solution: str) -> str:
    """The final answer of a GSM8K worked solution: the text after `####`."""
    if "####" not in solution:
        raise ValueError("GSM8K answer has no '#### N' final line")
    return solution.rsplit("####", 1)[1].strip()


def _arithmetic(subset: Subset) -> list[BenchProblem]:
    levels = subset.levels or (1,)
    count = subset.limit if subset.limit is not None else DEFAULT_ARITHMETIC_COUNT
    seed = subset.seed if subset.seed is not None else 0
    problems = []
    for index in range(count):
        level = levels[index % len(levels)]
        problem = generate(level, seed, index)
        problems.append(
            BenchProblem(
                "arithmetic",
                f"arithmetic-s{seed}-L{level}-{index}",
                problem.question,
                str(problem.answer),
                "numeric",
                level,
            )
        )
    return problems


def _from_file(path: Path, fields: JsonlFields, grader: Grader | None) -> list[BenchProblem]:
    if not path.is_file():
        raise ValueError(f"dataset {str(path)!r} is neither one of {BUILTIN} nor a JSONL file")
    problems = []
    for index, row in enumerate(_read_jsonl(path)):
        for field in (fields.question, fields.answer):
            if field not in row:
                raise ValueError(
                    f"{path} line {index + 1}: no field {field!r} "
                    "(name the fields with --question-field/--answer-field)"
                )
        gold = str(row[fields.answer])
        problems.append(
            BenchProblem(
                dataset=path.stem,
                id=str(row[fields.id]) if fields.id else f"{path.stem}-{index}",
                question=str(row[fields.question]),
                gold=gold,
                grader=grader or guess_grader(gold),
                level=int(row[fields.level]) if fields.level and fields.level in row else None,
            )
        )
    return problems


def guess_grader(gold: str) -> Grader:
    """Plain numbers (commas, `$` allowed) are graded numerically, the rest by math-verify."""
    plain = normalize_answer(gold).replace(",", "")
    return "numeric" if re.fullmatch(r"-?\d+(?:\.\d+)?", plain) else "math"


def _take(problems: list[BenchProblem], subset: Subset) -> list[BenchProblem]:
    if subset.levels:
        problems = [p for p in problems if p.level in subset.levels]
    limit = len(problems) if subset.limit is None else min(subset.limit, len(problems))
    if subset.seed is None:
        return problems[:limit]
    return random.Random(subset.seed).sample(problems, limit)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def parse_levels(text: str | None) -> tuple[int, ...] | None:
    """`--levels 1,2` or `1-3` into a tuple; validated against the generator's levels."""
    if not text:
        return None
    levels: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        levels.extend(range(int(low), int(high or low) + 1))
    if any(level not in LEVELS for level in levels):
        raise ValueError(f"levels must be within {LEVELS}, got {text!r}")
    return tuple(levels)

"""`ponder bench` datasets: shipped files, the arithmetic generator, JSONL and subsets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clients.bench.arithmetic import generate
from clients.bench.datasets import (
    DATA_DIR,
    JsonlFields,
    Subset,
    gsm8k_gold,
    load_dataset,
    parse_levels,
)


def test_shipped_files_carry_their_source_and_license() -> None:
    readme = (DATA_DIR / "README.md").read_text()
    assert "openai/grade-school-math" in readme and "MIT" in readme
    assert len(load_dataset("gsm8k")) == 1319
    assert len(load_dataset("math500")) == 500


def test_gsm8k_gold_is_the_number_after_the_hashes() -> None:
    first = load_dataset("gsm8k", Subset(limit=1))[0]
    assert (first.id, first.gold, first.grader) == ("gsm8k-0", "18", "numeric")
    assert gsm8k_gold("a\n#### 1,000") == "1,000"
    with pytest.raises(ValueError):
        gsm8k_gold("no final line")


def test_math500_levels_filter_and_seeded_sample() -> None:
    level_one = load_dataset("math500", Subset(levels=(1,)))
    assert len(level_one) == 43 and {p.level for p in level_one} == {1}
    assert all(p.grader == "math" for p in level_one)
    sample = load_dataset("math500", Subset(limit=10, seed=3))
    assert sample == load_dataset("math500", Subset(limit=10, seed=3))
    assert sample != load_dataset("math500", Subset(limit=10))
    assert len({p.id for p in sample}) == 10


def _operations(question: str) -> int:
    return question.count("Then ") + question.count(" bags with ")


def _evaluate(question: str) -> int:
    """Recompute a generated problem's answer from its text alone."""
    value = 0
    for sentence in re.split(r"(?<=[.?])\s", question):
        if m := re.search(r"has (\d+) bags with (\d+)", sentence):
            value = int(m[1]) * int(m[2])
        elif m := re.search(r"has (\d+) \w+\.$", sentence):
            value = int(m[1])
        elif m := re.search(r"gets (\d+) more", sentence):
            value += int(m[1])
        elif m := re.search(r"gives away (\d+)", sentence):
            value -= int(m[1])
        elif m := re.search(r"has (\d+) times as many", sentence):
            value *= int(m[1])
        elif m := re.search(r"into (\d+) equal groups", sentence):
            assert value % int(m[1]) == 0
            value //= int(m[1])
    return value


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_arithmetic_levels_count_operations_and_answers_are_right(level: int) -> None:
    for index in range(40):
        problem = generate(level, seed=7, index=index)
        assert _operations(problem.question) == level, problem.question
        assert _evaluate(problem.question) == problem.answer > 0, problem.question


def test_arithmetic_is_seeded_and_stable_under_a_larger_limit() -> None:
    small = load_dataset("arithmetic", Subset(limit=4, levels=(1, 2)))
    large = load_dataset("arithmetic", Subset(limit=10, levels=(1, 2)))
    assert large[:4] == small
    assert [p.level for p in small] == [1, 2, 1, 2]
    other_seed = load_dataset("arithmetic", Subset(limit=4, levels=(1, 2), seed=1))
    assert [p.question for p in other_seed] != [p.question for p in small]
    assert len(load_dataset("arithmetic")) == 100


def test_jsonl_with_named_fields(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [
        {"q": "What is 1+1?", "a": "2", "key": "x1", "lvl": 1},
        {"q": "Simplify 2/4.", "a": "\\frac{1}{2}", "key": "x2", "lvl": 2},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = JsonlFields(question="q", answer="a", id="key", level="lvl")
    problems = load_dataset(str(path), Subset(), fields)
    assert [(p.id, p.grader, p.level) for p in problems] == [
        ("x1", "numeric", 1),
        ("x2", "math", 2),
    ]
    assert [p.id for p in load_dataset(str(path), Subset(levels=(2,)), fields)] == ["x2"]
    with pytest.raises(ValueError, match="--question-field"):
        load_dataset(str(path))


def test_unknown_dataset_and_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="neither"):
        load_dataset("no-such-file.jsonl")
    assert parse_levels("1-3,5") == (1, 2, 3, 5)
    with pytest.raises(ValueError):
        parse_levels("0,6")

from __future__ import annotations

import pytest

from search_strategies.answers import extract_answer, last_boxed, normalize_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("So the total is \\boxed{12}.", "12"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{3} then \\boxed{\\text{4}}", "4"),
        ("nested \\boxed{2^{10}} done", "2^{10}"),
        ("truncated \\boxed{12} and \\boxed{3", "12"),
        ("He pays $1,200.00 in total.", "1200"),
        ("The answer is 0.50", "0.5"),
        ("17, then 25, so 42, done", "42"),
        ("It drops to -4 degrees", "-4"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("$1,234", "1234"), ("12.", "12"), ("007", "7"), ("-0.0", "0"), ("\\$5", "5"),
     ("\\text{apples}", "apples"), ("x = 3", "x = 3")],
)
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_last_boxed_none_without_box() -> None:
    assert last_boxed("plain text 5") is None

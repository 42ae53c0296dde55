"""`ponder bench` grading: known equivalent and non-equivalent answers."""

from __future__ import annotations

from fractions import Fraction

import pytest

from clients.bench.grading import grade, grade_math, grade_numeric, parse_number
from search_strategies.answers import extract_answer


@pytest.mark.parametrize(
    ("gold", "predicted", "correct"),
    [
        ("1200", "$1,200.00", True),
        ("1,200", "1200", True),
        ("18", "\\$18", True),
        ("18", "18 dollars", True),
        ("18", "x = 18", True),
        ("-4", "-4.0", True),
        ("0.5", "1/2", True),
        ("0.5", "\\frac{1}{2}", True),
        ("18", "18.5", False),
        ("18", "81", False),
        ("1200", "120", False),
        ("5", "-5", False),
    ],
)
def test_numeric_grading_after_normalisation(gold: str, predicted: str, correct: bool) -> None:
    result = grade_numeric(gold, predicted)
    assert result.parsed
    assert result.correct is correct


@pytest.mark.parametrize(
    ("gold", "predicted", "correct"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
        ("\\dfrac{3}{4}", "\\frac34", True),
        ("\\frac{1}{2}", "\\frac{2}{4}", True),
        ("\\frac{1}{3}", "0.33", False),
        ("3", "\\frac{1}{3}", False),
        ("30^\\circ", "30", True),
        ("30", "30^\\circ", True),
        ("45^\\circ", "30^\\circ", False),
        ("(1,2]", "(1, 2]", True),
        ("[1,2]", "(1,2)", False),
        ("(-\\infty, 3)", "(-\\infty,3)", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("2\\sqrt{3}", "\\sqrt{12}", True),
        ("x^2+1", "1+x^2", True),
        ("\\text{(C)}", "C", True),
        ("\\text{(C)}", "D", False),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100", True),
        ("\\{1,2\\}", "\\{2,1\\}", True),
    ],
)
def test_math_verify_grading(gold: str, predicted: str, correct: bool) -> None:
    result = grade_math(gold, predicted)
    assert result.parsed
    assert result.correct is correct


@pytest.mark.parametrize(
    ("grader", "gold", "predicted"),
    [
        ("numeric", "18", None),
        ("numeric", "18", "  "),
        ("numeric", "18", "eighteen"),
        ("math", "\\frac{1}{2}", None),
        ("math", "\\frac{1}{2}", "??"),
        ("math", "5", "\\text{hello"),
    ],
)
def test_unparseable_predictions_are_wrong_and_flagged(
    grader: str, gold: str, predicted: str | None
) -> None:
    result = grade(grader, gold, predicted)
    assert (result.correct, result.parsed) == (False, False)


def test_server_extracted_answers_grade_like_the_text_they_came_from() -> None:
    """The server sends `extract_answer(text)`; grading must accept its normal forms."""
    assert grade_numeric("1200", extract_answer("He pays $1,200.00 in total.")).correct
    assert grade_math("\\frac{1}{2}", extract_answer("so \\boxed{\\dfrac{1}{2}}")).correct


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$1,234.50", Fraction(2469, 2)),
        ("1234.5", Fraction(2469, 2)),
        ("1,200", Fraction(1200)),
        ("$18.50", Fraction(37, 2)),
        ("-3", Fraction(-3)),
        ("3/4", Fraction(3, 4)),
        ("0.75", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("1/3", Fraction(1, 3)),
        ("0.1", Fraction(1, 10)),  # exact, not the float nearest 0.1
    ],
)
def test_parse_number_reads_exact_values(text: str, value: Fraction) -> None:
    parsed = parse_number(text)
    assert isinstance(parsed, Fraction)
    assert parsed == value


@pytest.mark.parametrize("text", ["\\frac{3}{0}", "3/0", "abc", ""])
def test_parse_number_refuses_what_is_not_a_number(text: str) -> None:
    assert parse_number(text) is None


def test_non_numeric_gold_is_refused_by_the_numeric_grader() -> None:
    with pytest.raises(ValueError, match="not a number"):
        grade_numeric("\\frac{a}{b}", "1")

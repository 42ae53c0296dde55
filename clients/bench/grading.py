"""Is a predicted answer right? Numeric comparison for GSM8K-style, math-verify for MATH.

A prediction that cannot be read as an answer at all (no answer, or nothing
math-verify can parse) is wrong and flagged `parsed=False`, so the report can list
it: a model that never writes a final answer should not look merely unlucky.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from search_strategies.answers import last_number, normalize_answer

_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\s?\d{3})+(?:\.\d+)?")
_FRACTION = re.compile(r"^(-?\d+)\s*/\s*(\d+)$|^\\d?frac\{(-?\d+)\}\{(\d+)\}$")


@dataclass(frozen=True)
class Grade:
    correct: bool
    #: False when the prediction could not be parsed (it then counts as wrong).
    parsed: bool


def grade(grader: str, gold: str, predicted: str | None) -> Grade:
    if grader == "numeric":
        return grade_numeric(gold, predicted)
    if grader == "math":
        return grade_math(gold, predicted)
    raise ValueError(f"unknown grader {grader!r}")


def parse_number(text: str) -> Fraction | None:
    """A number written as `1,200`, `$18.50`, `-3`, `3/4` or `\\frac{3}{4}`, exactly."""
    value = normalize_answer(text)
    match = _FRACTION.match(value)
    if match:
        numerator, denominator = (int(g) for g in match.groups() if g is not None)
        return Fraction(numerator, denominator) if denominator else None
    try:
        return Fraction(Decimal(value.replace(",", "")))
    except (InvalidOperation, ValueError):
        return None


def grade_numeric(gold: str, predicted: str | None) -> Grade:
    """Exact comparison after normalisation (`$`, commas, trailing `.00`, units).

    A prediction with words around its number (`18 dollars`, `x = 18`) is read as
    its last number, as GSM8K graders conventionally do.
    """
    expected = parse_number(gold)
    if expected is None:
        raise ValueError(f"gold answer {gold!r} is not a number; grade it with math-verify")
    if predicted is None or not predicted.strip():
        return Grade(correct=False, parsed=False)
    value = parse_number(predicted)
    if value is None:
        number = last_number(predicted)
        value = parse_number(number) if number is not None else None
    if value is None:
        return Grade(correct=False, parsed=False)
    return Grade(correct=value == expected, parsed=True)


def grade_math(gold: str, predicted: str | None) -> Grade:
    """math-verify equivalence: `verify(gold, prediction)`, gold first.

    The order matters: math-verify is not symmetric (e.g. it reads a gold interval
    or set strictly and a prediction leniently), and its docs put the gold first.
    The prediction is the server's extracted `\\boxed{}` content, so it is boxed
    again for parsing; the gold is MATH's bare LaTeX, so it goes in `$...$`.
    """
    from math_verify import parse, verify

    if predicted is None or not predicted.strip():
        return Grade(correct=False, parsed=False)
    gold, predicted = _join_thousands(gold), _join_thousands(predicted)
    gold_parsed = parse(f"${gold}$")
    if not gold_parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    # Without a fallback, text math-verify cannot read yields [] instead of the raw
    # string, which is how an unparseable prediction is told apart from a wrong one.
    predicted_parsed = parse(f"\\boxed{{{predicted}}}", fallback_mode="no_fallback")
    if not predicted_parsed:
        return Grade(correct=False, parsed=False)
    return Grade(correct=bool(verify(gold_parsed, predicted_parsed)), parsed=True)


def _join_thousands(text: str) -> str:
    """`11,\\! 111,\\! 100` is one number in MATH, not a set: drop its separators."""
    plain = text.replace("\\!", "").strip()
    return re.sub(r"[,\s]", "", plain) if _THOUSANDS.fullmatch(plain) else text

"""Final-answer extraction and normalisation, shared by selection and grading.

`\\boxed{...}` is the convention math models are trained on; small models often
forget it, so word problems fall back to the last number in the text.
"""

from __future__ import annotations

import re
from decimal import Decimal

_NUMBER = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)")
_BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` in `text`, or None."""
    start = text.rfind(_BOXED)
    while start != -1:
        depth = 0
        for index in range(start + len(_BOXED) - 1, len(text)):
            char = text[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOXED) : index]
        # Unclosed box (e.g. a truncated sample): try an earlier one.
        start = text.rfind(_BOXED, 0, start)
    return None


def last_number(text: str) -> str | None:
    """The last number written in `text` (commas and `$` allowed), or None."""
    matches = _NUMBER.findall(text)
    return matches[-1] if matches else None


def normalize_answer(answer: str) -> str:
    """Canonical form for voting: `$1,200.00` and `1200` count as the same answer."""
    value = answer.strip()
    value = re.sub(r"\\text\{([^{}]*)\}", r"\1", value)
    value = value.replace("\\$", "").replace("$", "").replace("\\!", "").strip()
    value = value.rstrip(".").strip()
    if re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?", value) and any(
        c.isdigit() for c in value
    ):
        number = Decimal(value.replace(",", "")).normalize()
        value = format(number.copy_abs() if number.is_zero() else number, "f")
    return re.sub(r"\s+", " ", value)


def extract_answer(text: str) -> str | None:
    """Normalised final answer of a solution: last `\\boxed{}`, else last number."""
    raw = last_boxed(text)
    if raw is None:
        raw = last_number(text)
    if raw is None:
        return None
    normalized = normalize_answer(raw)
    return normalized or None

"""Final-answer extraction and normalisation, shared by selection and grading.

`\\boxed{...}` is the convention math models are trained on; small models often
forget it, so word problems fall back to the last number in the text.

Two forms of an answer exist. `normalize_answer` gives the *surface* form, which is
what a candidate reports (and what the bench grades): light clean-up only, so the
text still reads as the model wrote it. `canonical_answer` gives the *voting key*:
`\\frac{1}{2}`, `1/2` and `0.5` are one answer to a vote, as in HF search-and-learn's
canonical grouping and Hendrycks' MATH `strip_string`.

Everything here runs for every candidate on the server's event loop, so every
function is linear in its input; numbers are compared as exact fractions by a
hand-written parser rather than sympy / math-verify (see `canonical_answer`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

_BOXED = "\\boxed{"
_BRACE = re.compile(r"[{}]")
_MINUS = "\u2212"  # Unicode minus sign, common in model output and datasets.
# A `-` is a sign only when not glued to a word, number or closing bracket before
# it: `x-5` and `10-12` are differences, not -5 and -12.
_NUMBER = re.compile(
    rf"(?:(?<![\w)\]}}])[-{_MINUS}])?\$?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?(?!\d)"
)
# `1{,}200` and `1\,200` are LaTeX spellings of the thousands separator in `1,200`.
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` in `text`, or None.

    "Last" is the closed box that opens last: a truncated `\\boxed{3` falls back to an
    earlier box, and `\\boxed{\\boxed{5}}` yields `5`. A brace's partner depends only
    on the text after it, so matching every brace once with a stack finds the same
    pairs as rescanning from each `\\boxed{` did, in linear instead of quadratic time
    (a truncated sample full of unclosed boxes stalled the event loop for seconds).
    """
    if _BOXED not in text:
        return None
    open_braces: list[int] = []
    best: tuple[int, int] | None = None  # (opening brace, closing brace) of the box
    for match in _BRACE.finditer(text):
        index = match.start()
        if text[index] == "{":
            open_braces.append(index)
        elif open_braces:
            opened = open_braces.pop()
            if (best is None or opened > best[0]) and _opens_box(text, opened):
                best = (opened, index)
    return None if best is None else text[best[0] + 1 : best[1]]


def _opens_box(text: str, brace: int) -> bool:
    """Is the `{` at index `brace` the one that ends a `\\boxed{`?"""
    start = brace - len(_BOXED) + 1
    return start >= 0 and text.startswith(_BOXED, start)


def last_number(text: str) -> str | None:
    """The last number written in `text` (commas, `$` and a minus allowed), or None."""
    matches = _NUMBER.findall(text)
    return matches[-1].replace(_MINUS, "-") if matches else None


def normalize_answer(answer: str) -> str:
    """Surface form: `$1,200.00`, `1{,}200` and `1200` read the same; `−5` is `-5`."""
    value = answer.strip().replace(_MINUS, "-")
    value = _LATEX_THOUSANDS.sub(",", value)
    value = re.sub(r"\\text\{([^{}]*)\}", r"\1", value)
    value = value.replace("\\$", "").replace("$", "").replace("\\!", "").strip()
    value = value.rstrip(".").strip()
    if re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?", value) and any(
        c.isdigit() for c in value
    ):
        number = Decimal(value.replace(",", "")).normalize()
        value = format(number.copy_abs() if number.is_zero() else number, "f")
    return " ".join(value.split())


def extract_answer(text: str) -> str | None:
    """Normalised final answer of a solution: last `\\boxed{}`, else last number."""
    raw = last_boxed(text)
    if raw is None:
        raw = last_number(text)
    if raw is None:
        return None
    normalized = normalize_answer(raw)
    return normalized or None


# --- Voting key -----------------------------------------------------------------

# Markup that never changes an answer's value (Hendrycks' `strip_string` drops the same).
_LATEX_NOISE = re.compile(r"\\(?:left|right|displaystyle)(?![A-Za-z])|\\[,!;: ]")
_WRAPPERS = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\{([^{}]*)\}")
# `x = 5`, `x_1 = 5`, `\theta = 30`: a lone variable named on the left.
_VARIABLE_PREFIX = re.compile(r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*=\s*(?=\S)")
# Up to three units after the value (degrees, percent, dollars), searched for only in
# the last `_UNIT_TAIL` characters so that a long answer costs nothing extra.
_UNIT_SUFFIX = re.compile(r"(?:\s*(?:\^\{?\\circ\}?|\\circ|°|\\?%|\\\$)){1,3}\s*$")
_UNIT_TAIL = 40
_SQRT_SHORTHAND = re.compile(r"\\sqrt(\w)")
# A space matters only between two letters (`no solution`, `\pi r`). Two passes, each
# led by a literal space, which the regex engine finds fast.
_SPACE_BEFORE_NON_LETTER = re.compile(r" (?![A-Za-z])")
_SPACE_AFTER_NON_LETTER = re.compile(r" (?<![A-Za-z] )")

_UNSIGNED = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_SIGNED = rf"[+-]?\s*(?:{_UNSIGNED})"
# Words after a number that change its value, so they are not units.
_NOT_UNITS = r"(?:pi|hundred|thousand|million|billion|trillion)s?\b"
_EXACT_NUMBER = re.compile(
    rf"(?P<sign>[+-]?)\s*(?:"
    rf"\\frac\{{\s*(?P<frac_num>{_SIGNED})\s*\}}\{{\s*(?P<frac_den>{_SIGNED})\s*\}}"
    rf"|\\frac(?P<short_num>\d)(?P<short_den>\d)"
    rf"|(?P<num>{_UNSIGNED})\s*(?:/\s*(?P<den>{_UNSIGNED}))?"
    rf")(?:\s+(?!{_NOT_UNITS})[A-Za-z]{{2,}})*"  # trailing unit words: `5 apples`, `12 cm`
)
# Numbers longer than this are compared as strings: it bounds Fraction's big-int
# work per candidate, and no real final answer is that long.
_MAX_NUMBER_CHARS = 100


def canonical_answer(answer: str) -> str:
    """Voting key: one string for every way of writing the same answer.

    Numbers become exact fractions (`\\frac{1}{2}`, `\\dfrac12`, `1/2`, `0.5`, `+0.50`
    all give `1/2`; `1{,}200` gives `1200`), after dropping a `x =` prefix and units
    (`^\\circ`, `\\%`, `\\$`, `\\text{ apples}`). Anything else gets the same
    decorations dropped and LaTeX spacing compacted, and is compared as text.

    Why not math-verify (the bench's grader) here: it answers "are these two equal?",
    not "what is this one's canonical form?", so grouping N candidates would take up
    to N²/2 sympy comparisons on the event loop, each of which it bounds only with a
    whole-second, process-wide `SIGALRM`. Exact rationals cover what splits real
    votes, in microseconds, and agree with the bench's numeric grader
    (`clients/bench/grading.parse_number`).
    """
    text = _strip_decorations(_plain_latex(normalize_answer(answer)))
    number = _exact_number(text)
    return str(number) if number is not None else _compact(text)


def _plain_latex(text: str) -> str:
    """The same LaTeX with value-neutral markup removed or spelled one way."""
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _WRAPPERS.sub(r"\1", _LATEX_NOISE.sub("", text))
    text = _SQRT_SHORTHAND.sub(r"\\sqrt{\1}", text)
    return " ".join(text.split())  # single spaces keep later searches linear


def _strip_decorations(text: str) -> str:
    """Drop a `x =` prefix (unless more `=` follow) and trailing units."""
    prefix = _VARIABLE_PREFIX.match(text)
    if prefix and "=" not in text[prefix.end() :]:
        text = text[prefix.end() :]
    unit = _UNIT_SUFFIX.search(text, max(0, len(text) - _UNIT_TAIL))
    return text[: unit.start()] if unit and unit.start() > 0 else text


def _compact(text: str) -> str:
    """Single-spaced `text` without the spaces that do not separate two letters."""
    return _SPACE_AFTER_NON_LETTER.sub("", _SPACE_BEFORE_NON_LETTER.sub("", text))


def _exact_number(text: str) -> Fraction | None:
    """`text` as an exact rational, or None when it is not a plain number."""
    if len(text) > _MAX_NUMBER_CHARS:
        return None
    match = _EXACT_NUMBER.fullmatch(text)
    if match is None:
        return None
    parts = match.groupdict()
    numerator = _decimal(parts["frac_num"] or parts["short_num"] or parts["num"])
    denominator = _decimal(parts["frac_den"] or parts["short_den"] or parts["den"] or "1")
    if denominator == 0:
        return None
    value = numerator / denominator
    return -value if parts["sign"] == "-" else value


def _decimal(text: str) -> Fraction:
    """`-1,200.5` or `.5` as an exact Fraction (the regex has vetted the syntax)."""
    return Fraction(re.sub(r"[\s,]", "", text))

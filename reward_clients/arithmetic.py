"""A weight-free step verifier: checks the arithmetic a step writes down.

Chain-of-thought steps are full of claims like `12 * 7 = 84` or `$1,200 - $200 =
$1,000`. This verifier finds them, evaluates both sides exactly (`Fraction`, a small
recursive-descent parser; never `eval`) and scores a step 1 when every claim holds,
0 when one is false, and `neutral` when it has nothing it can check.

A wrong "false" punishes a correct solution, while a skipped claim only loses
signal, so whenever the text around a claim could change its meaning ("half of
3 + 5 = 4", "2x - 3 = 7", "= 1.2 million", "= 75%") the claim is skipped.

The text is the policy's, so a user can make it adversarial. Exact big-number
arithmetic is super-linear (a 2,001-character product of `3^32768`s took 17 s), so
the work per step is bounded: no value may exceed `_MAX_BITS`, and a step spends at
most `_STEP_WORK` on its lines with `=`, their claims and their operations (18 lines
like "She has 3 * 4 = 12 apples left after giving 5 away, so 12 - 5 = 7.", a few
milliseconds; a line over about 2,000 characters is not checked). A claim past
either bound is skipped like any other claim it cannot check.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby

from search_strategies.reward import Aggregation

NUM, OP, LP, RP, EQ, WORD, OTHER, NL = "num op lp rp eq word other nl".split()
_ARITH = {NUM, OP, LP, RP, EQ}
_MINUS = {"-", "−"}
_MUL = {"*", "×", "·", "⋅", "∗", "x", "X"}
_DIV = {"/", "÷"}
_BULLETS = {"-", "*", "+", "−"}
_MAX_DEPTH = 60
#: Largest numerator or denominator, in bits, of any value computed or estimated
#: (about 2,466 digits; a literal has at most `_MAX_DIGITS`). A Fraction operation
#: on such values costs a fraction of a millisecond; at 65,536 bits it cost 10-20 ms.
_MAX_BITS = 1 << 13
_MAX_DIGITS = 1000
#: Work units (each a microsecond or two of CPU) one step may spend on its claims;
#: see `_line_cost`, `_run_cost` and `_operation_cost` for what costs what.
_STEP_WORK = 4000

_TOKEN = re.compile(
    r"(?P<nl>\n)|(?P<ws>[^\S\n]+)"
    r"|(?P<num>[$€£¥₹]?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+))"
    r"|(?P<op>[-+*/×·⋅∗÷−^])|(?P<lp>\()|(?P<rp>\))|(?P<eq>=+)"
    r"|(?P<word>[^\W\d_]+)|(?P<other>.)"
)
# LaTeX spellings of the same arithmetic, and markdown bold (which is not `**`).
_REWRITES = [
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\times(?![a-zA-Z])"), " × "),
    (re.compile(r"\\cdot(?![a-zA-Z])"), " · "),
    (re.compile(r"\\div(?![a-zA-Z])"), " ÷ "),
    (re.compile(r"\\(?:left|right)(?![a-zA-Z])"), ""),
    (re.compile(r"\\[()\[\]]|\*\*"), " "),
    (re.compile(r"(?<=\d)(?:\{,\}|,?\\[,!])(?=\d{3})"), ","),  # 729{,}000, 729,\!000
    (re.compile(r"\\\$"), "$"),
]
#: Words that change the value of the expression right after them.
_BEFORE_BLOCK = frozenset(
    "x times plus minus by over than per into from half halves twice double doubled "
    "triple tripled thrice sqrt cbrt root log ln lg exp sin cos tan abs frac dfrac "
    "negative mod modulo divide divided multiply multiplied percent".split()
)
#: Words that make "<x> of" a multiplication ("half of", "20% of", "3 of").
_OF_MULTIPLIERS = frozenset(
    "half halves third thirds quarter quarters fourth fourths fifth fifths sixth "
    "sixths seventh sevenths eighth eighths ninth ninths tenth tenths twice double "
    "triple square cube root percent percentage fraction reciprocal inverse log "
    "logarithm factorial product".split()
)
#: Words that change the value of the number right before them.
_AFTER_BLOCK = frozenset(
    "times plus minus divided multiplied over squared cubed percent hundred hundreds "
    "thousand thousands million millions billion billions trillion trillions dozen "
    "dozens factorial mod modulo bn mn mil".split()
)
_LEFT_SAFE = frozenset(":;,.!?\"'`#[{$→⇒•“”‘’")
_RIGHT_SAFE = frozenset(".,;:!?\"'`]}$…“”‘’")


@dataclass(frozen=True)
class Token:
    """A piece of the (rewritten) step text; `start`/`end` tell what touches what."""

    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Claim:
    """One checked `lhs = rhs` found in a step."""

    lhs: str
    rhs: str
    holds: bool


class _NoParse(Exception):
    """The tokens are not (only) an arithmetic expression we understand."""


class _Work:
    """What a step may still spend on checking its claims, in deterministic units.

    Units, not seconds, so that a step scores the same on a busy machine as on an
    idle one. The first thing the step cannot afford ends the check: what is
    checked never depends on what comes after it.
    """

    def __init__(self, units: int = _STEP_WORK) -> None:
        self.left = units

    def spend(self, units: int) -> bool:
        """Take `units` (then True); if fewer are left, spend them all (False)."""
        if units > self.left:
            self.left = 0
            return False
        self.left -= units
        return True


def _line_cost(line: str) -> int:
    """Rewriting and tokenizing a line: a few regex passes, up to a token per character."""
    return 10 + 2 * len(line)


def _run_cost(tokens: int) -> int:
    """Parsing both sides of every `=` in a run of `tokens` arithmetic tokens."""
    return 20 + 2 * tokens


def _operation_cost(bits: int) -> int:
    """Units of one operation on values of up to `bits` bits.

    Fraction arithmetic reduces by gcd, about quadratic in the size: measured, about
    10 us at 1,024 bits and 150 us at 8,192 (and 10-20 ms at 65,536).
    """
    return 4 + 2 * (bits // 1024 + 1) ** 2


def _sizes(value: Fraction) -> tuple[int, int]:
    return value.numerator.bit_length(), value.denominator.bit_length()


def _result_bits(op: str, left: Fraction, right: Fraction) -> int:
    """Bound on the bits of `left op right` before reduction: what computing it handles."""
    (ln, ld), (rn, rd) = _sizes(left), _sizes(right)
    if op in _MUL:
        return max(ln + rn, ld + rd)
    if op in _DIV:
        return max(ln + rd, ld + rn)
    return max(ln + rd, rn + ld, ld + rd) + 1  # + and -


_BINARY: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": Fraction.__add__,
    **{op: Fraction.__sub__ for op in _MINUS},
    **{op: Fraction.__mul__ for op in _MUL},
    **{op: Fraction.__truediv__ for op in _DIV},
}


class _Parser:
    """Recursive descent over a token slice; `None` values mean "undefined" (x/0).

    Every operation is sized before it runs and paid for from `work`; one that could
    exceed `_MAX_BITS`, or that the step can no longer afford, raises `_NoParse`.
    """

    def __init__(self, tokens: Sequence[Token], work: _Work) -> None:
        self.tokens = tokens
        self.work = work
        self.pos = 0
        self.depth = 0
        self.has_op = False

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take_op(self, ops: set[str]) -> str | None:
        """Consume the next token if it is one of `ops`; return it, or None."""
        token = self._peek()
        if token is None or token.kind != OP or token.text not in ops:
            return None
        self.pos += 1
        return token.text

    def _nest(self, step: int) -> None:
        self.depth += step
        if self.depth > _MAX_DEPTH:
            raise _NoParse("nested too deeply")

    def _afford(self, bits: int) -> None:
        """Pay for an operation on values of up to `bits`, or refuse it."""
        if bits > _MAX_BITS:
            raise _NoParse("values this large are not checked")
        if not self.work.spend(_operation_cost(bits)):
            raise _NoParse("the step has spent its checking budget")

    def _binary(self, op: str, left: Fraction | None, right: Fraction | None) -> Fraction | None:
        if left is None or right is None or (op in _DIV and right == 0):
            return None
        self._afford(_result_bits(op, left, right))
        return _BINARY[op](left, right)

    def expr(self) -> Fraction | None:
        self._nest(1)
        value = self.term()
        while (op := self._take_op({"+"} | _MINUS)) is not None:
            self.has_op = True
            value = self._binary(op, value, self.term())
        self._nest(-1)
        return value

    def term(self) -> Fraction | None:
        value = self.unary()
        while (op := self._take_op(_MUL | _DIV)) is not None:
            self.has_op = True
            value = self._binary(op, value, self.unary())
        return value

    def unary(self) -> Fraction | None:
        if self._take_op(_MINUS) is not None:
            self._nest(1)
            value = self.unary()
            self._nest(-1)
            return None if value is None else -value
        return self.power()

    def power(self) -> Fraction | None:
        base = self.atom()
        if self._take_op({"^"}) is None:
            return base
        self.has_op = True
        self._nest(1)
        exponent = self.unary()  # right-associative: 2^3^2 = 2^9
        self._nest(-1)
        if base is None or exponent is None:
            return None
        if exponent.denominator != 1:
            raise _NoParse("only whole powers are checked")
        self._afford(abs(exponent.numerator) * max(_sizes(base)))
        if base == 0 and exponent < 0:
            return None
        return base**exponent.numerator

    def atom(self) -> Fraction | None:
        token = self._peek()
        if token is None:
            raise _NoParse("expression ends early")
        if token.kind == NUM:
            if len(token.text) > _MAX_DIGITS:  # int() refuses over 4300 digits anyway
                raise _NoParse("number too long")
            self.pos += 1
            return _number(token.text)
        if token.kind == LP:
            self.pos += 1
            value = self.expr()
            closing = self._peek()
            if closing is None or closing.kind != RP:
                raise _NoParse("unbalanced parenthesis")
            self.pos += 1
            return value
        raise _NoParse(f"unexpected {token.text!r}")


def _number(text: str) -> Fraction:
    digits = text.lstrip("$€£¥₹").replace(",", "")
    # Fraction(str) runs a regex; whole numbers, the common case, need none.
    return Fraction(int(digits)) if digits.isdecimal() else Fraction(digits)


def _parse(tokens: Sequence[Token], work: _Work) -> tuple[Fraction | None, bool, int]:
    """Parse the longest expression at the start: (value, has an operator, tokens used)."""
    parser = _Parser(tokens, work)
    value = parser.expr()
    return value, parser.has_op, parser.pos


def evaluate(expression: str) -> Fraction:
    """Exact value of a plain arithmetic expression such as `(3 + 4) × 2`.

    Raises `ValueError` when the text is not one whole expression (or one too big
    to check: see `_MAX_BITS`) and `ZeroDivisionError` when it divides by zero.
    """
    tokens = [t for t in tokenize(expression) if t.kind != NL]
    try:
        value, _, used = _parse(tokens, _Work())
    except _NoParse as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r} ({exc})") from None
    if used != len(tokens) or any(t.kind not in _ARITH for t in tokens):
        raise ValueError(f"not an arithmetic expression: {expression!r}")
    if value is None:
        raise ZeroDivisionError(f"division by zero in {expression!r}")
    return value


def tokenize(text: str) -> list[Token]:
    """Tokens of `text` after LaTeX rewrites; `x` is an operator only between numbers."""
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    tokens = [
        Token(m.lastgroup or OTHER, m.group(), m.start(), m.end())
        for m in _TOKEN.finditer(text)
        if m.lastgroup != "ws"
    ]
    for i, token in enumerate(tokens):
        if token.kind == WORD and token.text in ("x", "X") and 0 < i < len(tokens) - 1:
            before, after = tokens[i - 1], tokens[i + 1]
            hex_prefix = before.text == "0" and _glued(before, token)  # 0x1F
            if before.kind in (NUM, RP) and after.kind in (NUM, LP) and not hex_prefix:
                tokens[i] = Token(OP, token.text, token.start, token.end)
    return tokens


def _glued(left: Token, right: Token) -> bool:
    return left.end == right.start


def _left_context_ok(tokens: Sequence[Token], start: int, leading_minus: bool) -> bool:
    """Whether the text before a claim's left side leaves its value alone."""
    if start == 0 or tokens[start - 1].kind == NL:
        return True
    ctx, first = tokens[start - 1], tokens[start]
    prev = tokens[start - 2] if start >= 2 else None
    if ctx.kind == WORD:
        word = ctx.text.lower()
        if leading_minus or _glued(ctx, first) or word in _BEFORE_BLOCK:
            return False  # "2x - 3", "sqrt(16)", "3 times 4 + 2"
        if word == "of" and prev is not None:
            return not (prev.kind in (NUM, OTHER) or prev.text.lower() in _OF_MULTIPLIERS)
        return True
    if ctx.kind != OTHER or ctx.text not in _LEFT_SAFE:
        return False
    # "2,5 * 4", "3:4 + 1", "5! - 3": the mark belongs to a number on its left.
    after_number = prev is not None and prev.kind in (NUM, RP) and _glued(prev, ctx)
    return not (after_number and (_glued(ctx, first) or leading_minus))


def _right_context_ok(tokens: Sequence[Token], end: int) -> bool:
    """Whether the text after a claim's right side leaves its value alone."""
    if end >= len(tokens) or tokens[end].kind == NL:
        return True
    ctx, last = tokens[end], tokens[end - 1]
    if ctx.kind == WORD:
        word = ctx.text.lower()
        # "= 6x", "= 1.2k", "= 3 million"; glued longer words are units ("12kg").
        return word not in _AFTER_BLOCK and not (_glued(last, ctx) and len(word) == 1)
    if ctx.kind != OTHER or ctx.text not in _RIGHT_SAFE:
        return False  # "= 75%", "≈", "<"
    following = tokens[end + 1] if end + 1 < len(tokens) else None
    # "= 2,5", "= 0.\overline{3}": the mark continues the number, it does not end it.
    return not (
        ctx.text in ",."
        and following is not None
        and following.kind != NL
        and following.text not in _RIGHT_SAFE
        and _glued(last, ctx)
        and _glued(ctx, following)
    )


def _bare_decimals(segment: Sequence[Token]) -> int:
    """Decimal places of a side that is just a written number (`-3.33`), else 0."""
    body = segment[1:] if segment and segment[0].text in _MINUS else segment
    if len(body) != 1 or body[0].kind != NUM or "." not in body[0].text:
        return 0
    return len(body[0].text.rsplit(".", 1)[1])


def _equal(
    left: Fraction | None, right: Fraction | None, left_places: int, right_places: int
) -> bool:
    """Exact equality, or a written decimal that is the other side rounded or cut."""
    if left is None or right is None:
        return False  # division by zero never equals anything
    if left == right:
        return True
    for exact, written, places in ((left, right, right_places), (right, left, left_places)):
        if places:
            scaled = exact * 10**places
            if written * 10**places in (math.floor(scaled), math.ceil(scaled)):
                return True
    return False


def _side(
    tokens: Sequence[Token], lo: int, hi: int, first: bool, last: bool, work: _Work
) -> tuple[Fraction | None, bool, int, int] | None:
    """Parse one side `tokens[lo:hi]` of a run: (value, has operator, lo, hi), or None.

    Sides between two `=` must be whole expressions. The first side may shed a list
    bullet ("- 3 * 4 = 12") or an opening parenthesis of the surrounding text
    ("(3 + 4 = 7)") and must pass the left-context check; the last may stop before a
    closing one or before a prose aside ("= 12 (a dozen)") and otherwise must pass the
    right-context check.
    """
    shed = False
    line_start = lo == 0 or tokens[lo - 1].kind == NL
    if first:
        bullet = line_start and hi - lo > 1 and tokens[lo].text in _BULLETS
        if bullet and not _glued(tokens[lo], tokens[lo + 1]):  # "-3 * 4": a number
            lo, shed = lo + 1, True
        kinds = [t.kind for t in tokens[lo:hi]]
        unclosed = kinds.count(LP) - kinds.count(RP)
        while lo < hi and tokens[lo].kind == LP and unclosed > 0:
            lo, unclosed, shed = lo + 1, unclosed - 1, True
    seg = tokens[lo:hi]
    if not seg:
        return None
    try:
        value, has_op, used = _parse(seg, work)
    except _NoParse:
        return None
    if first and not shed and not _left_context_ok(tokens, lo, seg[0].text in _MINUS):
        return None
    if used == len(seg):
        if last and not _right_context_ok(tokens, hi):
            return None
        return value, has_op, lo, hi
    rest = seg[used:]
    closes_outer = all(t.kind == RP for t in rest)
    aside = len(rest) == 1 and rest[0].kind == LP and not _glued(seg[used - 1], rest[0])
    if last and (closes_outer or aside):
        return value, has_op, lo, lo + used
    return None


def _run_claims(tokens: Sequence[Token], start: int, end: int, work: _Work) -> list[Claim]:
    """Claims in one maximal run `tokens[start:end]` of arithmetic tokens."""
    eqs = [i for i in range(start, end) if tokens[i].kind == EQ]
    bounds = list(zip([start] + [i + 1 for i in eqs], eqs + [end]))
    sides = [
        _side(tokens, lo, hi, k == 0, k == len(bounds) - 1, work)
        for k, (lo, hi) in enumerate(bounds)
    ]
    claims = []
    for k in range(len(sides) - 1):
        left, right = sides[k], sides[k + 1]
        if left is None or right is None:
            continue
        if k == 0 and not left[1]:
            # A bare number first: "sum of 3 and 4 = 7", "x: 5 = 5" are not claims.
            if not right[1] or (left[2] > 0 and tokens[left[2] - 1].kind == WORD):
                continue
        lseg, rseg = tokens[left[2] : left[3]], tokens[right[2] : right[3]]
        holds = _equal(left[0], right[0], _bare_decimals(lseg), _bare_decimals(rseg))
        lhs, rhs = (" ".join(t.text for t in seg) for seg in (lseg, rseg))
        claims.append(Claim(lhs, rhs, holds))
    return claims


#: A line holding an `=`: a claim never spans lines, and one without `=` has none.
_CLAIM_LINE = re.compile(r"^[^\n=]*=[^\n]*", re.MULTILINE)


def _claim_lines(text: str, work: _Work) -> Iterator[str]:
    """The lines of `text` worth checking, in order, each paid for from `work`.

    Found by one regular-expression scan, so prose costs no Python work per line. A
    line longer than a whole step's budget is skipped (no claim in it is checked);
    the first line the step can no longer afford ends the check.
    """
    for match in _CLAIM_LINE.finditer(text):
        line = match.group()
        if _line_cost(line) > _STEP_WORK:
            continue
        if not work.spend(_line_cost(line)):
            return
        yield line


def _line_claims(line: str, work: _Work) -> list[Claim]:
    """Claims in one line of text."""
    tokens = tokenize(line)
    claims: list[Claim] = []
    runs = groupby(range(len(tokens)), key=lambda k: tokens[k].kind in _ARITH)
    for is_arithmetic, group in runs:
        span = list(group)
        if is_arithmetic and any(tokens[k].kind == EQ for k in span):
            if not work.spend(_run_cost(len(span))):
                break
            claims.extend(_run_claims(tokens, span[0], span[-1] + 1, work))
    return claims


def find_claims(text: str) -> list[Claim]:
    """Every `lhs = rhs` in `text` whose two sides are plain arithmetic, checked.

    At most `_STEP_WORK` is spent: claims past it are not found (see `_claim_lines`).
    """
    work = _Work()
    return [claim for line in _claim_lines(text, work) for claim in _line_claims(line, work)]


class ArithmeticVerifier:
    """`RewardModel` that scores a step by the arithmetic claims it makes."""

    #: Each step is checked on its own: a wrong step early on leaves the last step's
    #: score untouched, so only "min" lets it count against the solution.
    default_aggregation: Aggregation = "min"

    def __init__(self, neutral: float = 0.5) -> None:
        if not 0.0 <= neutral <= 1.0:
            raise ValueError(f"neutral must be in [0, 1], got {neutral}")
        self.neutral = neutral

    @property
    def name(self) -> str:
        return "arithmetic"

    def score_step(self, step: str) -> float:
        """1 when every claim found holds, 0 when one is false, else `neutral`.

        Milliseconds at most, whatever the text: the work is bounded (`_STEP_WORK`).
        """
        claims = find_claims(step)
        if not claims:
            return self.neutral
        return 1.0 if all(claim.holds for claim in claims) else 0.0

    def score_all(self, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """`score_step` of every step of every solution, in the same shape."""
        return [[self.score_step(step) for step in steps] for steps in solutions]

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """Runs `score_all` in a worker thread, so the event loop serves other requests.

        The thread alone would not be enough: a big-integer operation holds the GIL
        until it ends. The bounds on each step keep every operation short, so the
        loop gets the GIL back within a few milliseconds.
        """
        return await asyncio.to_thread(self.score_all, solutions)

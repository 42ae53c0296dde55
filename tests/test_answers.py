from __future__ import annotations

import timeit

import pytest
from hypothesis import given, strategies as st

from search_strategies.answers import extract_answer, last_boxed, normalize_answer
from search_strategies.best_of_n import select_by_reward, select_majority, vote_shares
from search_strategies.results import Candidate

#: `last_boxed` and answer canonicalisation run for every candidate on the event loop.
#: What these tests catch is a quadratic (or backtracking) scan of a 100k-character
#: answer, which takes seconds; linear scans take 3-15 ms here. The bound leaves room
#: for a slow or busy CI machine (0.05 s failed once while a sweep held both cores).
FAST_S = 0.5


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
        ("It drops to \u22125 degrees", "-5"),  # Unicode minus sign
        ("so x-5", "5"),  # a hyphen glued to a word is not a sign
        ("read pages 10-12", "12"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("$1,234", "1234"),
        ("12.", "12"),
        ("007", "7"),
        ("-0.0", "0"),
        ("\\$5", "5"),
        ("\\text{apples}", "apples"),
        ("x = 3", "x = 3"),
    ],
)
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_last_boxed_none_without_box() -> None:
    assert last_boxed("plain text 5") is None


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("\\boxed{" * 14_300, None),  # a truncated sample repeating an unclosed box
        ("\\boxed{{" * 12_500, None),  # the same with nested braces
        ("\\boxed{1} " * 5_000 + "\\boxed{" * 7_200, "1"),  # closed boxes, unclosed tail
        ("\\boxed{" * 12_500 + "x" + "}" * 12_500, "x"),  # deeply nested closed boxes
    ],
    ids=["unclosed", "unclosed-nested", "closed-then-unclosed", "nested-closed"],
)
def test_last_boxed_is_linear(text: str, content: str | None) -> None:
    assert len(text) >= 100_000
    assert last_boxed(text) == content
    assert min(timeit.repeat(lambda: last_boxed(text), number=1, repeat=3)) < FAST_S


def _last_boxed_by_rescanning(text: str) -> str | None:
    """The quadratic definition `last_boxed` must agree with: from the last `\\boxed{`
    back, the first whose braces balance."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth = 0
        for index in range(start + len("\\boxed"), len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                return text[start + len("\\boxed{") : index]
        start = text.rfind("\\boxed{", 0, start)
    return None


@given(st.lists(st.sampled_from(["\\boxed{", "\\boxed", "{", "}", "x", "1", " "])).map("".join))
def test_last_boxed_agrees_with_rescanning(text: str) -> None:
    assert last_boxed(text) == _last_boxed_by_rescanning(text)


def _sample(text: str, logprob: float = -1.0) -> Candidate:
    return Candidate(
        text=text,
        answer=extract_answer(text),
        mean_logprob=logprob,
        finish_reason="stop",
        num_tokens=len(text.split()),
    )


def _boxed(answer: str, logprob: float = -1.0) -> Candidate:
    return _sample(f"So the answer is \\boxed{{{answer}}}.", logprob)


@pytest.mark.parametrize(
    ("forms", "other"),
    [
        (["\\frac{1}{2}", "\\dfrac{1}{2}", "1/2", "0.5"], "0.25"),
        (["\\tfrac12", "\\frac{2}{4}", "+0.50"], "\\frac{1}{0}"),
        (["1{,}200", "1\\,200", "1200"], "120"),
        (["\u22125", "- 5", "-5"], "5"),
        (["+5", "5"], "-5"),
        (["x = 5", "5"], "x = 6"),
        (["5^\\circ", "5^{\\circ}", "5"], "50"),
        (["5\\%", "5"], "0.05"),
        (["5 \\text{ apples}", "5"], "5 \\text{ million}"),
        (["x = \\sqrt{2}", "\\sqrt2"], "\\sqrt{3}"),
        (["\\left(1, 2\\right)", "(1,2)"], "(2,1)"),
    ],
)
def test_equivalent_answers_vote_together(forms: list[str], other: str) -> None:
    """`forms` pool their votes and outvote `other`, which stays a group of its own.

    `other` has one vote fewer than `forms` together but more than any single form,
    and likelier samples, so it wins wherever the forms split the vote.
    """
    same = [_boxed(form) for form in forms]
    different = [_boxed(other, logprob=-0.1) for _ in forms[1:]]
    pool = same + different
    assert select_majority(pool) in same
    shares = vote_shares(pool)
    assert set(shares[: len(same)]) == {len(same) / len(pool)}
    assert set(shares[len(same) :]) == {len(different) / len(pool)}


def test_majority_reports_the_most_common_form() -> None:
    """The canonical majority wins; its answer is the form most of its samples wrote."""
    halves = [_boxed("0.5"), _boxed("0.5"), _boxed("\\frac{1}{2}", -0.1), _boxed("1/2", -0.1)]
    quarters = [_boxed("0.25") for _ in range(3)]
    chosen = select_majority(halves + quarters)
    assert chosen is not None and chosen.answer == "0.5"


def test_weighted_vote_reports_the_most_common_form() -> None:
    """Rewards sum per canonical answer; the reported answer is the common form."""
    pool = [_boxed("\\frac{1}{2}"), _boxed("0.5"), _boxed("0.5"), _boxed("0.25")]
    chosen = select_by_reward(pool, [0.9, 0.3, 0.3, 1.0], "weighted")
    assert chosen is not None and chosen.answer == "0.5"


@pytest.mark.parametrize(
    "answer",
    [
        "%" * 100_000,
        "\\, " * 30_000,
        "1" * 100_000,
        "x" * 100_000 + "%",
        "\\frac{" + "9" * 100_000 + "}{7}",
    ],
    ids=["percent-run", "latex-spaces", "long-number", "long-word", "long-fraction"],
)
def test_voting_on_huge_answers_is_fast(answer: str) -> None:
    pool = [_sample(f"\\boxed{{{answer}}}"), _boxed("1")]
    assert min(timeit.repeat(lambda: select_majority(pool), number=1, repeat=3)) < FAST_S

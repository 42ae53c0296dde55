"""The arithmetic verifier under adversarial text: bounded work, and off the event loop.

A user can ask the policy to write any step, and the verifier's exact big-number
arithmetic is super-linear: before the fix one 2,001-character step of `3^32768`
factors took 13-17 s, inline on the server's event loop (issue 13, defect 1). No
engine, no HTTP: the verifier alone.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from reward_clients.arithmetic import ArithmeticVerifier, find_claims

NEUTRAL = 0.25  # not 0.5, so "nothing checked" cannot pass for an average
VERIFIER = ArithmeticVerifier(neutral=NEUTRAL)
#: Per step; the bounded verifier takes a few milliseconds of CPU at most.
STEP_LIMIT_S = 0.05
#: Largest pause of the event loop while a best-of-64 batch is scored.
LOOP_GAP_LIMIT_S = 1.0
PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73)

T = TypeVar("T")


def product_of_powers(factors: int) -> str:
    """Review §11: each `3^32768` is under the old power cap; their product is not."""
    return " * ".join(["3^32768"] * factors) + " = 1"


def sum_of_fractions(terms: int, bits: int = 65536) -> str:
    """Review §11: `1/(p^e + i) + ...`, coprime big denominators (growing gcds)."""
    parts = (
        f"1/({p}^{bits // p.bit_length()} + {i + 2})"
        for i, p in ((i, PRIMES[i % len(PRIMES)]) for i in range(terms))
    )
    return " + ".join(parts) + " = 1"


def quotient_of_products(factors: int) -> str:
    """Review §11 (adv2.py): a big product over a big product."""
    top = " * ".join(["3^32768"] * factors)
    bottom = " * ".join(["(3^32768 + 2)"] * factors)
    return f"({top}) / ({bottom}) = 1"


ADVERSARIAL_STEPS = {
    "200 factors 3^32768 (review: 16.7 s)": product_of_powers(200),
    "40 fractions 1/(p^e + i) (review: 6.4 s)": sum_of_fractions(40),
    "quotient of 40-factor products (review: 4.9 s)": quotient_of_products(40),
    "1,600 factors 99999999999": " * ".join(["99999999999"] * 1600) + " = 1",
    "ten lines of 120 factors 99999999999": "\n".join(
        [" * ".join(["99999999999"] * 120) + " = 1"] * 10
    ),
    "ten lines of 150 fractions 1/n": "\n".join(
        " + ".join(f"1/{n}" for n in range(2 + 150 * j, 152 + 150 * j)) + " = 1" for j in range(10)
    ),
    "ten lines of 12 fractions 1/(p^e + i), e at the bound": "\n".join(
        [sum_of_fractions(12, bits=2048)] * 10
    ),
    "3,000 fractions 1/n on one line": " + ".join(f"1/{n}" for n in range(2, 3002)) + " = 1",
    "nested parentheses, 59 deep, 200 lines": ("(" * 59 + "2" + ")" * 59 + " * 3 = 6\n") * 200,
    "20,000 parentheses": "(" * 20_000 + "1 = 1",
    "20,000 characters of claims, one line": ("12 * 7 = 84. " * 1600)[:20_000],
    "20,000 characters of claims, a line each": ("12 * 7 = 84.\n" * 1600)[:20_000],
    "20,000 characters of =1": "=1" * 10_000,
    "5,000 lines 1=1": "1=1\n" * 5000,
    "2,000 lines 2^4000 * 2^100": "2^4000 * 2^100 = 1\n" * 2000,
    "a 1,900-character line 1x1x...": "1x" * 950 + "1 = 1",
    "1,000-digit literals": ("9" * 1000 + " / 7 = 1\n") * 30,
}


def best_time(step: str, tries: int = 3) -> float:
    """Fastest of a few runs: a busy machine may pause any one run; a slow step is slow
    every time (so a run far over the limit is not repeated)."""
    best = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        VERIFIER.score_step(step)
        best = min(best, time.perf_counter() - start)
        if best < STEP_LIMIT_S or best > 1.0:
            break
    return best


@pytest.mark.parametrize("step", ADVERSARIAL_STEPS.values(), ids=ADVERSARIAL_STEPS.keys())
def test_every_adversarial_step_scores_in_milliseconds(step: str) -> None:
    elapsed = best_time(step)
    assert elapsed < STEP_LIMIT_S, f"{elapsed:.3f} s for {len(step)} characters"


@pytest.mark.parametrize(
    "step",
    [
        product_of_powers(200),
        sum_of_fractions(40),
        quotient_of_products(40),
        "2^4096 * 2^4096 = 1",
    ],
)
def test_a_claim_too_big_to_check_is_unscored_not_false(step: str) -> None:
    assert find_claims(step) == []
    assert VERIFIER.score_step(step) == NEUTRAL


def test_claims_around_a_refused_one_still_count() -> None:
    huge = product_of_powers(3)
    assert VERIFIER.score_step(f"{huge}\n3 * 4 = 13") == 0.0
    assert VERIFIER.score_step(f"3 * 4 = 12\n{huge}") == 1.0


def test_values_up_to_the_bound_are_still_checked() -> None:
    assert VERIFIER.score_step("2^4000 / 2^3999 = 2") == 1.0
    assert VERIFIER.score_step("(2^4000 + 1) - 2^4000 = 2") == 0.0
    assert VERIFIER.score_step("9" * 900 + " - " + "9" * 899 + "0 = 9") == 1.0


def test_the_budget_checks_a_long_step_from_its_start() -> None:
    """Claims past the step's budget are not seen; the ones before it are."""
    assert VERIFIER.score_step("3 * 4 = 13\n" + "1 + 1 = 2\n" * 5000) == 0.0
    assert VERIFIER.score_step("1 + 1 = 2\n" * 5000 + "3 * 4 = 13") == 1.0


def test_score_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    class Recording(ArithmeticVerifier):
        def score_all(self, solutions):  # type: ignore[no-untyped-def]
            threads.append(threading.get_ident())
            return super().score_all(solutions)

    scores = asyncio.run(Recording().score("q", [["3 * 4 = 12", "3 * 4 = 13"], []]))
    assert scores == [[1.0, 0.0], []]
    assert threads and threads[0] != threading.get_ident()


async def largest_loop_gap(work: Awaitable[T]) -> tuple[T, float, int]:
    """Await `work` while a ticker on the same loop sleeps 10 ms at a time; return
    the result, the largest time between two ticks and the number of ticks."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker is running before the work starts
    try:
        result = await work
    finally:
        done.set()
        await task
    return result, max(gaps), len(gaps)


#: Review-style steps, smaller than the ones above so that the code before the fix
#: (scoring inline) blocked the loop for seconds, not for minutes.
BATCH_STEPS = [
    product_of_powers(20),
    sum_of_fractions(10),
    quotient_of_products(10),
    ("12 * 7 = 84.\n" * 1600)[:20_000],
]


def test_best_of_64_adversarial_batch_leaves_the_event_loop_responsive() -> None:
    solutions = [[BATCH_STEPS[i % len(BATCH_STEPS)]] for i in range(64)]
    scores, gap, ticks = asyncio.run(largest_loop_gap(VERIFIER.score("q", solutions)))
    assert len(scores) == 64 and all(len(row) == 1 for row in scores)
    assert ticks >= 1
    assert gap < LOOP_GAP_LIMIT_S, f"the event loop stalled for {gap:.2f} s"

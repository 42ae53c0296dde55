"""Seeded arithmetic word problems with known answers, for models too small for GSM8K.

The level is the number of arithmetic operations in the story (1 to 5). The embedded
135M model solves some level-1 problems and almost no level-2 ones (see
PLATFORM.md), so level 1 is where search has room to help it; higher levels are
for larger models. Each problem is drawn from its own RNG seeded by
(seed, level, index), so asking for more problems never changes the earlier ones
and a resumed run sees the same questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LEVELS = (1, 2, 3, 4, 5)
_NAMES = ("Sam", "Lily", "Omar", "Mia", "Ravi", "Ana", "Ben", "Zoe", "Kenji", "Nora")
_ITEMS = ("marbles", "apples", "stickers", "pencils", "coins", "cookies", "shells", "cards")
_MAX_VALUE = 999


@dataclass(frozen=True)
class WordProblem:
    question: str
    answer: int
    level: int


def generate(level: int, seed: int, index: int) -> WordProblem:
    """Problem number `index` of `level` for `seed`; the same arguments give the same problem."""
    if level not in LEVELS:
        raise ValueError(f"arithmetic level must be one of {LEVELS}, got {level}")
    rng = random.Random(f"arithmetic/{seed}/{level}/{index}")
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    operations = level
    if rng.random() < 0.5:
        # The opening sentence itself is one multiplication.
        bags, each = rng.randint(2, 9), rng.randint(2, 12)
        value = bags * each
        sentences = [f"{name} has {bags} bags with {each} {items} in each bag."]
        operations -= 1
    else:
        value = rng.randint(5, 40)
        sentences = [f"{name} has {value} {items}."]
    for _ in range(operations):
        value, sentence = _step(rng, value, name, items)
        sentences.append(sentence)
    sentences.append(f"How many {items} does {name} have now?")
    return WordProblem(question=" ".join(sentences), answer=value, level=level)


def _step(rng: random.Random, value: int, name: str, items: str) -> tuple[int, str]:
    """One operation on the running total, phrased as a sentence; keeps it in 1..999."""
    choices = ["add"]
    if value > 1:
        choices.append("subtract")
    if value * 2 <= _MAX_VALUE:
        choices.append("multiply")
    divisors = [k for k in range(2, 10) if value % k == 0 and value // k >= 1]
    if divisors:
        choices.append("divide")
    kind = rng.choice(choices)
    if kind == "add":
        amount = rng.randint(1, min(40, _MAX_VALUE - value))
        return value + amount, f"Then {name} gets {amount} more {items}."
    if kind == "subtract":
        amount = rng.randint(1, value - 1)
        return value - amount, f"Then {name} gives away {amount} {items}."
    if kind == "multiply":
        factor = rng.randint(2, min(5, _MAX_VALUE // value))
        return value * factor, (
            f"Then {name}'s {items} are multiplied so that {name} has {factor} times as many."
        )
    parts = rng.choice(divisors)
    return value // parts, (
        f"Then {name} splits the {items} into {parts} equal groups and keeps only one group."
    )

"""`ponder bench fit-auto`: the `auto` strategy's policy table from benchmark results.

Snell et al. 2024 bin questions by difficulty and, per bin and budget, pick the
search that does best. Here, from the results of one sweep (a best-of-N run that
keeps its samples, plus any strategies at any budgets, on the same problems):

1. Each problem's **feature** is what the serving-time probe will measure: the mean
   reward of its first `probe_n` best-of-N samples (or their answer agreement).
   The bins are quantiles of that feature over the problems (so the bins are the
   difficulty the server can predict, not the oracle's; the oracle's pass rate per
   bin is reported beside them).
2. Every result cell (a strategy label and setting) is a candidate **choice** at the
   budget it ran under: `budget.max_tokens` for step searches, the mean generated
   tokens (rounded up) for best-of-N rows, whose subsampled sizes become their own
   choices (`n`, `selection` from the row).
3. Per bin and per budget level B, the choice is the most accurate cell among those
   run at B tokens or fewer (ties: the cheaper, then the name), with its accuracy
   and the number of problems behind it.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from clients.bench.store import Row, read_rows
from search_strategies.auto_policy import (
    AutoChoice,
    AutoPolicy,
    DifficultyBin,
    Feature,
    ProbeSpec,
)
from search_strategies.best_of_n import vote_shares
from search_strategies.results import Candidate

#: Row params that are not the strategy's own (per request, or the bench's).
NOT_PARAMS = frozenset({"seed", "label", "return_trace", "reward"})


class FitError(ValueError):
    """The results cannot make a table (no best-of-N samples, no common problems)."""


@dataclass(frozen=True)
class Cell:
    """One candidate choice: a strategy with fixed parameters, run under `budget`
    tokens (None: no budget, as best-of-N ran; its level is what it spent)."""

    strategy: str
    params: tuple[tuple[str, Any], ...]
    budget: int | None


def problem_features(rows: Sequence[Row], probe_n: int, feature: Feature) -> dict[str, float]:
    """Per problem, the probe feature of its first `probe_n` best-of-N samples."""
    features = {}
    for row in rows:
        samples = row.get("samples")
        if not samples:
            continue
        first = samples[:probe_n]
        if feature == "mean_reward":
            features[row["problem_id"]] = fmean(float(s.get("score") or 0.0) for s in first)
        else:
            candidates = [Candidate("", s.get("answer"), 0.0, "stop", 0) for s in first]
            features[row["problem_id"]] = max(vote_shares(candidates), default=0.0)
    if not features:
        raise FitError("no best-of-N samples in the results: run best_of_n (it keeps them)")
    return features


def quantile_bins(values: Sequence[float], count: int, names: Sequence[str]) -> list[DifficultyBin]:
    """`count` bins holding about equal shares of `values`; the last reaches 1.0."""
    ordered = sorted(values)
    uppers: list[float] = []
    for k in range(1, count):
        bound = ordered[min(len(ordered) - 1, math.ceil(k * len(ordered) / count) - 1)]
        if not uppers or bound > uppers[-1]:
            uppers.append(bound)
    uppers.append(max(1.0, ordered[-1]))
    if len(uppers) > 1 and uppers[-1] == uppers[-2]:
        uppers.pop(-2)
    labels = (
        list(names) if len(names) == len(uppers) else [f"bin{i + 1}" for i in range(len(uppers))]
    )
    return [DifficultyBin(name=label, upper=upper) for label, upper in zip(labels, uppers)]


def cell_of(row: Row) -> Cell:
    """The choice a result row stands for (subsampled best-of-N: its own size)."""
    params = {k: v for k, v in (row.get("params") or {}).items() if k not in NOT_PARAMS}
    if row.get("subsampled_from"):
        size = re.match(r"n=(\d+)", row["setting"])
        if size:
            params["n"] = int(size.group(1))
        params["selection"] = row["label"].rsplit("/", 1)[-1]
    budget = (row.get("budget") or {}).get("max_tokens")
    return Cell(row["strategy"], tuple(sorted(params.items(), key=lambda kv: kv[0])), budget)


def fit(
    paths: Sequence[Path],
    probe_n: int = 2,
    feature: Feature = "mean_reward",
    bins: int = 3,
) -> AutoPolicy:
    rows = [row for path in paths for row in read_rows(path)]
    features = problem_features(rows, probe_n, feature)
    names = {3: ("hard", "medium", "easy"), 2: ("hard", "easy")}.get(bins, ())
    edges = quantile_bins(list(features.values()), bins, names)

    # A cell's budget level: its budget, or (best-of-N) the mean tokens it spent.
    outcomes: dict[Cell, dict[str, bool]] = defaultdict(dict)
    spent: dict[Cell, list[int]] = defaultdict(list)
    for row in rows:
        if row["problem_id"] not in features or "correct" not in row:
            continue
        cell = cell_of(row)
        outcomes[cell][row["problem_id"]] = bool(row["correct"])
        spent[cell].append(int(row["usage"]["generated_tokens"]))
    levels = {
        cell: cell.budget if cell.budget is not None else math.ceil(fmean(tokens))
        for cell, tokens in spent.items()
    }
    budgets = sorted(set(levels.values()))

    choices: dict[str, list[AutoChoice]] = {}
    for edge in edges:
        lower = max((b.upper for b in edges if b.upper < edge.upper), default=-math.inf)
        in_bin = {p for p, v in features.items() if lower < v <= edge.upper}
        if edge is edges[-1]:
            in_bin |= {p for p, v in features.items() if v > edge.upper}
        picks: list[AutoChoice] = []
        for budget in budgets:
            best = _best(outcomes, levels, in_bin, budget)
            if best is not None and (not picks or _differs(best, picks[-1])):
                picks.append(best)
        if not picks:
            raise FitError(f"bin {edge.name!r}: no results on its problems")
        choices[edge.name] = picks
    models = Counter(str(row["model"]) for row in rows if row.get("model"))
    rewards = Counter(row.get("reward") for row in rows if row.get("samples"))
    probe_tokens = next(
        (int(row["params"].get("max_new_tokens", 512)) for row in rows if row.get("samples")), 512
    )
    return AutoPolicy(
        model=models.most_common(1)[0][0] if models else "unknown",
        reward=rewards.most_common(1)[0][0] if rewards else None,
        feature=feature,
        probe=ProbeSpec(n=probe_n, max_new_tokens=probe_tokens),
        bins=edges,
        choices=choices,
        fitted_on=[str(path) for path in paths],
    )


def _best(
    outcomes: dict[Cell, dict[str, bool]],
    levels: dict[Cell, int],
    problems: set[str],
    budget: int,
) -> AutoChoice | None:
    """The most accurate cell run at `budget` tokens or fewer, on these problems."""
    scored = []
    for cell, results in outcomes.items():
        if levels[cell] > budget:
            continue
        seen = [results[p] for p in problems if p in results]
        if seen:
            scored.append((sum(seen) / len(seen), -levels[cell], cell.strategy, cell, len(seen)))
    if not scored:
        return None
    accuracy, _, _, cell, count = max(scored, key=lambda s: s[:3])
    return AutoChoice(
        max_tokens=budget,
        strategy=cell.strategy,
        params=dict(cell.params),
        accuracy=round(accuracy, 4),
        problems=count,
    )


def _differs(choice: AutoChoice, previous: AutoChoice) -> bool:
    """A larger budget needs its own entry only when it changes what is run."""
    return (choice.strategy, choice.params) != (previous.strategy, previous.params)

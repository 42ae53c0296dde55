"""`ponder bench ensemble`: what an ensemble of rewards would pick, from runs already made.

Two best-of-N runs with the same seeds draw the same samples (vLLM seeds sample i
with seed + i), so runs that differ only in their reward hold every sample's score
under each reward. Their weighted mean is a score-level ensemble: this module checks
that the runs really hold the same samples, combines the scores, and replays
selection at every N with the server's own selection functions (`subsample`), giving
result rows that `ponder bench report` and `compare` read like any other run.

It is the mean of each reward's *sample* score, which is what a `--reward a:1,b:1`
server computes only when both rewards aggregate their steps the same way (the
server's ensemble averages step scores, then aggregates); the docs say which was used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.bench.datasets import guess_grader
from clients.bench.grading import grade
from clients.bench.store import RESULTS_NAME, Row
from clients.bench.subsample import subsample

#: Fields of a source row that belong to its own pick, not to the problem or request.
_PICK_FIELDS = frozenset(
    {
        "label",
        "setting",
        "answer",
        "correct",
        "parsed",
        "usage",
        "samples",
        "server_answer",
        "answer_tail",
        "trace",
        "question",
    }
)
SELECTIONS = ("majority", "weighted", "max_reward")


class EnsembleError(ValueError):
    """The runs cannot be combined (other samples, no samples kept, no common problem)."""


@dataclass(frozen=True)
class Member:
    """One run's rows, the run's label (`learned` for `learned/weighted`...), a weight."""

    rows: list[Row]
    run: str
    weight: float


def _sources(member: Member) -> dict[tuple[str, str], Row]:
    """Per problem, the row that kept the run's samples."""
    found = {
        (str(r["dataset"]), str(r["problem_id"])): r
        for r in member.rows
        if str(r["label"]).split("/")[0] == member.run and r.get("samples")
    }
    if not found:
        raise EnsembleError(
            f"run {member.run!r} kept no samples: it needs a best-of-N run with a reward "
            f"selection (rows labelled {member.run}/weighted ...)"
        )
    return found


def _reward_usage(member: Member, key: tuple[str, str]) -> tuple[int, int]:
    """(reward calls, reward tokens) the member's full-size run spent on one problem."""
    spent = [
        (int(r["usage"].get("reward_calls", 0)), int(r["usage"].get("reward_tokens", 0)))
        for r in member.rows
        if (str(r["dataset"]), str(r["problem_id"])) == key
        and str(r["label"]).split("/")[0] == member.run
    ]
    # By calls first: a verifier's call reports no reward tokens, yet it was a call.
    return max(spent, default=(0, 0))


def _same_samples(key: tuple[str, str], runs: Sequence[str], samples: Sequence[list[Row]]) -> None:
    first = samples[0]
    for run, other in zip(runs[1:], samples[1:]):
        drawn = [(s.get("answer"), s.get("num_tokens")) for s in other]
        if drawn != [(s.get("answer"), s.get("num_tokens")) for s in first]:
            raise EnsembleError(
                f"{key[1]}: runs {runs[0]!r} and {run!r} drew different samples (answers or "
                "token counts differ); an ensemble needs the same samples (same seeds, same "
                "sampling parameters, same policy)"
            )


def ensemble_rows(members: Sequence[Member], label: str) -> list[Row]:
    """Result rows of the weighted-mean ensemble on the problems every member answered."""
    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two runs")
    if any(m.weight <= 0 for m in members):
        raise EnsembleError("ensemble weights must be positive")
    sources = [_sources(m) for m in members]
    common = sorted(set.intersection(*(set(s) for s in sources)))
    if not common:
        raise EnsembleError("the runs share no problem")
    total = sum(m.weight for m in members)
    rows: list[Row] = []
    for key in common:
        found = [s[key] for s in sources]
        _same_samples(key, [m.run for m in members], [r["samples"] for r in found])
        combined = [
            {
                **sample,
                "score": sum(
                    m.weight * float(r["samples"][i].get("score") or 0.0)
                    for m, r in zip(members, found)
                )
                / total,
            }
            for i, sample in enumerate(found[0]["samples"])
        ]
        spent = [_reward_usage(m, key) for m in members]
        stopped = next(
            (r["stopped_reason"] for r in found if r.get("stopped_reason") != "completed"),
            "completed",
        )
        body: dict[str, Any] = {
            "candidates": combined,
            "stopped_reason": stopped,
            "usage": {
                "prompt_tokens": int(found[0]["usage"].get("prompt_tokens", 0)),
                "reward_calls": sum(calls for calls, _ in spent),
                "reward_tokens": sum(tokens for _, tokens in spent),
            },
        }
        base = {k: v for k, v in found[0].items() if k not in _PICK_FIELDS}
        base.update(reward=label, ensemble_of={m.run: m.weight for m in members})
        picks = subsample(body, tuple(range(1, len(combined) + 1)), SELECTIONS)
        gold = str(base["gold"])
        for pick in picks:
            result = grade(guess_grader(gold), gold, pick.answer)
            rows.append(
                {
                    **base,
                    "label": f"{label}/{pick.selection}",
                    "setting": f"n={pick.n}",
                    "answer": pick.answer,
                    "correct": result.correct,
                    "parsed": result.parsed,
                    "usage": pick.usage,
                }
            )
        # The samples themselves, once per problem, as a sweep keeps them (coverage).
        rows[len(rows) - len(picks)]["samples"] = combined
    return rows


def write_rows(rows: Sequence[Row], out: Path) -> Path:
    """results.jsonl in `out` (refused if one is there: a results file is not overwritten)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_NAME
    if path.exists():
        raise EnsembleError(f"{path} exists; give another --out")
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    return path

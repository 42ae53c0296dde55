"""`ponder learn collect`: search every training problem, keep every sample, graded.

The searches run through the bench's sweep (same client, retries, concurrency and
resumable results file), with `records.collect_rows` shaping what is stored: one
row per problem with all N samples. Before any request, the training problems are
checked against the evaluation set; an overlap is refused (or, with
`drop_overlap`, the overlapping problems are left out), and the result of the
check is recorded in the folder's `manifest.json`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.bench.datasets import BenchProblem
from clients.bench.grid import Cell, expand
from clients.bench.store import ResultsFile, Row
from clients.bench.sweep import SweepOptions, SweepOutcome, run_sweep
from learning.overlap import EvalSet, Overlap, find_overlap
from learning.records import COLLECTED_NAME, MANIFEST_NAME, collect_rows


class OverlapRefused(ValueError):
    """Training problems overlap the evaluation set and were not to be dropped."""


@dataclass(frozen=True)
class TrainingSet:
    """The problems to collect on, after the overlap check."""

    problems: list[BenchProblem]
    overlap: Overlap
    eval_set: EvalSet
    #: How many problems were asked for before overlapping ones were dropped.
    requested: int

    def check_message(self) -> str:
        if not self.overlap.problems:
            return (
                f"train/eval overlap check: none of {self.requested} training problems is "
                f"in the evaluation set ({self.eval_set.description}; "
                f"{self.eval_set.size} problems), by id or question text"
            )
        return (
            "train/eval overlap check: "
            + self.overlap.message(self.requested, self.eval_set)
            + f"; dropped them, {len(self.problems)} left"
        )


def training_set(
    problems: list[BenchProblem], eval_set: EvalSet, drop_overlap: bool
) -> TrainingSet:
    """The training problems, refused (`OverlapRefused`) if any is an evaluation problem."""
    overlap = find_overlap(problems, eval_set)
    if overlap.problems and not drop_overlap:
        examples = ", ".join(p.id for p in overlap.problems[:5])
        raise OverlapRefused(
            "refusing to collect: "
            + overlap.message(len(problems), eval_set)
            + f", e.g. {examples}. Choose another --seed or dataset, or pass --drop-overlap "
            "to leave those problems out"
        )
    dropped = {(p.dataset, p.id) for p in overlap.problems}
    kept = [p for p in problems if (p.dataset, p.id) not in dropped]
    return TrainingSet(kept, overlap, eval_set, len(problems))


def collect_cell(
    strategy: str,
    samples: int,
    params: dict[str, Any],
    reward: str | None,
    system_prompt: str,
) -> Cell:
    """The one request shape sent for every problem: `samples` samples, all returned.

    With a reward, best-of-N selects by `weighted` reward unless told otherwise, so
    that every sample's score is its reward (with `majority` it is a vote share).
    """
    if "n" in params:
        raise ValueError("set the number of samples with --samples, not --param n=...")
    spec: dict[str, Any] = {
        "strategy": strategy,
        "n": samples,
        "subsample": False,
        "system_prompt": system_prompt,
        **params,
    }
    if reward:
        spec["reward"] = reward
        if strategy == "best_of_n":
            spec.setdefault("selection", "weighted")
    cells = expand([spec])
    if len(cells) != 1:
        raise ValueError("collect sends one request shape; a --param cannot be a list")
    return cells[0]


async def collect(
    train: TrainingSet, cell: Cell, folder: Path, options: SweepOptions
) -> tuple[SweepOutcome, list[Row]]:
    """Run the searches not yet in `folder`; returns the outcome and every row on disk."""
    results = ResultsFile(folder / COLLECTED_NAME)
    try:
        outcome = await run_sweep(train.problems, [cell], results, options, collect_rows)
    finally:
        results.close()
    return outcome, results.rows


def manifest_entry(argv: list[str], train: TrainingSet, cell: Cell, server: str) -> dict[str, Any]:
    """What one collect asked for and what its overlap check found."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": ["ponder", "learn", "collect", *argv],
        "server": server,
        "train": {
            "requested": train.requested,
            "problems": len(train.problems),
            "datasets": sorted({p.dataset for p in train.problems}),
        },
        "eval": {"description": train.eval_set.description, "problems": train.eval_set.size},
        "overlap": {
            "count": len(train.overlap.problems),
            "by_id": train.overlap.by_id,
            "by_question": train.overlap.by_question,
            "dropped": [p.id for p in train.overlap.problems],
        },
        "request": {
            "cell": cell.key,
            "strategy": cell.strategy,
            "params": cell.params,
            "budget": cell.budget,
            "reward": cell.reward,
        },
    }


def record_collect(folder: Path, entry: dict[str, Any]) -> None:
    """Append `entry` to the folder's manifest (one entry per collect run, resumes too).

    Written before the first request, so the overlap check is on record even if the
    run is killed; `record_outcome` completes the entry afterwards.
    """
    manifest = read_manifest(folder)
    manifest["collects"].append(entry)
    _write_manifest(folder, manifest)


def record_outcome(folder: Path, outcome: dict[str, Any]) -> None:
    """Add how the latest collect ended (requests, skipped, failed, or an error)."""
    manifest = read_manifest(folder)
    manifest["collects"][-1]["outcome"] = outcome
    _write_manifest(folder, manifest)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return {"format": 1, "collects": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    path = folder / MANIFEST_NAME
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def summary(rows: list[Row]) -> str:
    """One line on what the folder holds: problems, samples, right samples, pairable problems."""
    samples = [s for row in rows for s in row["samples"]]
    right = sum(bool(s["correct"]) for s in samples)
    both = sum(
        any(s["correct"] for s in row["samples"]) and not all(s["correct"] for s in row["samples"])
        for row in rows
    )
    share = f" ({right / len(samples):.1%})" if samples else ""
    return (
        f"{len(rows)} problems, {len(samples)} samples, {right} right{share}; "
        f"{both} problems have both a right and a wrong sample (preference pairs)"
    )

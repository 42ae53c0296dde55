"""Monte-Carlo step labels (Math-Shepherd): is each step of a sample on a right path?

For every step i of a sample but the last, K rollouts continue the solution from its
first i steps, through the server (`/v1/solve`, best-of-N with `answer_prefix` and a
majority vote, so the server returns all K continuations); each completed solution
(prefix + continuation) is graded against the gold answer. The step's `hard` label
is "some rollout reached the gold answer" (Math-Shepherd's hard estimate), its
`soft` value the share that did. The last step is the sample's own outcome: the
sample is that step's completion.

Labels go to `mc_labels.jsonl` beside the collected rows (keyed by problem, cell and
sample index, plus the rollout count), so the collected file stays append-only and
`export --labels mc` joins the two. Labelling is resumable: samples already labelled
with the same K are skipped. Within a problem a prefix shared by several samples is
rolled out once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.bench.client import RequestRejected, RetriesExhausted, SolveClient
from clients.bench.grading import grade, parse_number
from clients.bench.sweep import SweepOptions
from learning.sources import Sample, SolvedProblem
from search_strategies.answers import extract_answer
from search_strategies.steps import DEFAULT_STEP_DELIMITER

MC_LABELS_NAME = "mc_labels.jsonl"
#: The exported label of a step from its rollouts: hard (any right), soft (most right).
ESTIMATES = {"mc": "hard", "mc-soft": "soft"}


def step_prefixes(sample: Sample, delimiter: str = DEFAULT_STEP_DELIMITER) -> list[str]:
    """The partial solutions to roll out from: the first i steps, i = 1 .. m-1."""
    return [delimiter.join(sample.steps[:i]) for i in range(1, len(sample.steps))]


def grader_for(gold: str) -> str:
    """Numeric comparison for a plain-number gold answer, else math-verify (the bench's
    `auto` rule)."""
    return "numeric" if parse_number(gold) is not None else "math"


def rollout_right(problem: SolvedProblem, prefix: str, continuation: str) -> bool:
    """Does the solution `prefix` + `continuation` end in the gold answer?"""
    answer = extract_answer(prefix + continuation)
    return grade(grader_for(problem.gold), problem.gold, answer).correct


@dataclass(frozen=True)
class PrefixResult:
    """What K rollouts from one prefix gave."""

    right: int
    rollouts: int
    generated_tokens: int


def sample_labels(
    sample: Sample, results: dict[str, PrefixResult], delimiter: str = DEFAULT_STEP_DELIMITER
) -> dict[str, Any]:
    """A sample's stored labels from its prefixes' rollouts (the last step: its outcome)."""
    rolled = [results[prefix] for prefix in step_prefixes(sample, delimiter)]
    soft = [r.right / r.rollouts for r in rolled] + [1.0 if sample.correct else 0.0]
    return {
        "hard": [r.right > 0 for r in rolled] + [sample.correct],
        "soft": soft,
    }


@dataclass(frozen=True)
class LabelRequest:
    """The rollout request's fixed part: K samples continuing a prefix, majority vote."""

    rollouts: int
    params: dict[str, Any]

    def body(self, problem: SolvedProblem, prefix: str, seed: int) -> dict[str, Any]:
        return {
            **self.params,
            "question": problem.question,
            "system_prompt": problem.system_prompt,
            "strategy": "best_of_n",
            "n": self.rollouts,
            "selection": "majority",
            "answer_prefix": prefix,
            "seed": seed,
        }


@dataclass
class LabelOutcome:
    samples: int = 0
    skipped: int = 0
    requests: int = 0
    generated_tokens: int = 0
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)


def done_keys(path: Path) -> set[tuple[str, str, int, int]]:
    """(problem id, cell, sample index, rollouts) already labelled in `path`."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            keys.add((row["problem_id"], row["cell"], int(row["index"]), int(row["rollouts"])))
    return keys


async def label_problem(
    problem: SolvedProblem,
    samples: Sequence[Sample],
    request: LabelRequest,
    solve: Callable[[dict[str, Any]], Any],
    base_seed: int,
) -> tuple[list[dict[str, Any]], int, int]:
    """Roll out every distinct prefix of `samples` once, concurrently; return the label
    rows, the requests sent and the tokens generated."""
    prefixes = sorted({p for s in samples for p in step_prefixes(s)}, key=len)

    async def roll(index: int, prefix: str) -> PrefixResult:
        body = await solve(request.body(problem, prefix, base_seed + index))
        continuations = [c["text"] for c in body["candidates"]]
        right = sum(rollout_right(problem, prefix, text) for text in continuations)
        return PrefixResult(right, len(continuations), int(body["usage"]["generated_tokens"]))

    done = await asyncio.gather(*(roll(i, p) for i, p in enumerate(prefixes)))
    results = dict(zip(prefixes, done, strict=True))
    rows = []
    for sample in samples:
        mine = [results[p] for p in step_prefixes(sample)]
        rows.append(
            {
                "problem_id": problem.problem_id,
                "dataset": problem.dataset,
                "cell": problem.cell,
                "index": sample.index,
                "rollouts": request.rollouts,
                "steps": len(sample.steps),
                **sample_labels(sample, results),
                "generated_tokens": sum(r.generated_tokens for r in mine),
            }
        )
    return rows, len(prefixes), sum(r.generated_tokens for r in done)


async def label_folder(
    folder: Path,
    problems: Iterable[SolvedProblem],
    request: LabelRequest,
    options: SweepOptions,
    base_seed: int = 0,
) -> LabelOutcome:
    """Label every sample of `problems` not yet in `folder/mc_labels.jsonl`.

    Problems run `options.concurrency` at a time; each problem's rows are appended in
    one write once all its rollouts are in, so a killed run loses at most the problems
    in flight and never leaves half a problem.
    """
    path = folder / MC_LABELS_NAME
    done = done_keys(path)
    outcome = LabelOutcome()
    todo: asyncio.Queue[tuple[SolvedProblem, list[Sample]]] = asyncio.Queue()
    for problem in problems:
        samples = [s for s in problem.samples if s.steps]
        fresh = [
            s
            for s in samples
            if (problem.problem_id, problem.cell, s.index, request.rollouts) not in done
        ]
        outcome.skipped += len(samples) - len(fresh)
        if fresh:
            todo.put_nowait((problem, fresh))
    started = time.monotonic()
    async with SolveClient(options.server, options.timeout_s, options.retry) as client:
        await client.model_name()

        async def solve(body: dict[str, Any]) -> dict[str, Any]:
            return (await client.solve(body)).body

        with path.open("a", encoding="utf-8") as out:

            async def worker() -> None:
                while not todo.empty():
                    problem, samples = todo.get_nowait()
                    try:
                        rows, sent, tokens = await label_problem(
                            problem, samples, request, solve, base_seed
                        )
                    except RetriesExhausted as error:
                        outcome.failures.append(f"{problem.problem_id}: {error}")
                        continue
                    out.write("".join(json.dumps(r) + "\n" for r in rows))
                    out.flush()
                    outcome.samples += len(rows)
                    outcome.requests += sent
                    outcome.generated_tokens += tokens

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(max(1, options.concurrency)):
                        group.create_task(worker())
            except* RequestRejected as rejected:
                raise rejected.exceptions[0] from None
    outcome.wall_s = time.monotonic() - started
    return outcome


def read_mc_labels(folder: Path, estimate: str) -> dict[tuple[str, str, int], list[bool]]:
    """(problem id, cell, sample index) -> step labels, `hard` or `soft` (share >= 1/2).

    A sample labelled with several rollout counts keeps its last labelling.
    """
    path = folder / MC_LABELS_NAME
    if not path.exists():
        raise ValueError(
            f"{folder} has no {MC_LABELS_NAME}: run `ponder learn label {folder} --server URL "
            "--rollouts K` first"
        )
    labels: dict[tuple[str, str, int], list[bool]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["problem_id"]), str(row["cell"]), int(row["index"]))
            values = row["hard"] if estimate == "hard" else [v >= 0.5 for v in row["soft"]]
            labels[key] = [bool(v) for v in values]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not an MC label row ({error})") from None
    return labels

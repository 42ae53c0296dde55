"""Runs a grid against a server: every cell × every problem, concurrently, resumably.

Each finished request is graded and appended to the results file at once (see
`store`), so progress survives a kill; a restart skips what is on disk. A request
the server rejects (4xx) stops the sweep, because every other problem of that cell
would be rejected too; one that stays busy past its retries is reported and left
for the next run of the same command.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clients.bench.client import RequestRejected, RetriesExhausted, RetryPolicy, SolveClient, Solved
from clients.bench.datasets import BenchProblem
from clients.bench.grading import grade
from clients.bench.grid import Cell
from clients.bench.store import ResultsFile, Row
from clients.bench.subsample import subsample

_TAIL_CHARS = 200
_SAMPLE_FIELDS = ("answer", "score", "mean_logprob", "num_tokens", "finish_reason")

#: Turns one graded response into result rows (bench: `rows_for`; `ponder learn`: its own).
RowMaker = Callable[[BenchProblem, Cell, Solved, str], list[Row]]


@dataclass(frozen=True)
class SweepOptions:
    server: str
    concurrency: int = 4
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float = 1800.0
    progress: bool = True


@dataclass
class SweepOutcome:
    requests: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    #: Subsampled picks at N_max that differ from the server's own answer (should be 0).
    selection_mismatches: int = 0


def graded_sample(problem: BenchProblem, candidate: dict[str, Any], keep_text: bool = False) -> Row:
    """One response candidate as a kept sample, graded against the gold answer.

    `keep_text` also keeps the solution text and whether its answer parsed, which is
    what training data needs (`ponder bench --keep-texts`, `ponder learn collect`).
    """
    result = grade(problem.grader, problem.gold, candidate.get("answer"))
    sample: Row = {**{k: candidate.get(k) for k in _SAMPLE_FIELDS}, "correct": result.correct}
    if keep_text:
        sample.update(text=candidate.get("text", ""), parsed=result.parsed)
    return sample


def request_row(problem: BenchProblem, cell: Cell, solved: Solved, model: str) -> Row:
    """The fields every row of one response shares: which problem, what was asked, cost."""
    body = solved.body
    return {
        "dataset": problem.dataset,
        "problem_id": problem.id,
        "level": problem.level,
        "gold": problem.gold,
        "cell": cell.key,
        "strategy": cell.strategy,
        "params": cell.params,
        "budget": cell.budget,
        "reward": body.get("reward"),
        "model": model,
        "stopped_reason": body["stopped_reason"],
        "latency_s": round(solved.latency_s, 3),
        "server_s": body["timing"]["total_s"],
        "attempts": solved.attempts,
        **_decision(body),
    }


def _decision(body: dict[str, Any]) -> Row:
    """What `auto` chose for this problem (its bin and strategy), so a sweep can say
    how often each choice was made; nothing for the fixed strategies."""
    auto = (body.get("search") or {}).get("auto")
    if not auto:
        return {}
    return {"auto": {"difficulty": auto.get("difficulty"), "chosen": auto.get("chosen_strategy")}}


def rows_for(
    problem: BenchProblem, cell: Cell, solved: Solved, model: str, keep_texts: bool = False
) -> list[Row]:
    """The graded result rows one response yields (several for a subsampled best-of-N).

    With `keep_texts`, the best-of-N source row also keeps the question and every
    sample's text, so the folder can be exported as training data (`ponder learn`).
    """
    body = solved.body
    base = request_row(problem, cell, solved, model)
    if not cell.subsample:
        row = _graded(
            problem,
            base,
            cell.label,
            cell.setting,
            body["answer"],
            body["usage"],
            body.get("answer_text"),
        )
        return [_with_trace(row, body, problem)]
    rest = "" if cell.setting == "default" else f",{cell.setting}"
    rows = []
    for pick in subsample(body, cell.subsample, cell.selections):
        row = _graded(
            problem,
            base,
            f"{cell.label}/{pick.selection}",
            f"n={pick.n}{rest}",
            pick.answer,
            pick.usage,
            None,
        )
        # Latency is the N_max run's: on a batching engine a smaller N costs about as much.
        row["subsampled_from"] = len(body["candidates"])
        rows.append(row)
    # The samples themselves, once, so selections can be replayed from the file later.
    rows[0]["samples"] = [graded_sample(problem, c, keep_texts) for c in body["candidates"]]
    rows[0]["server_answer"] = body["answer"]
    if keep_texts:
        rows[0]["question"] = problem.question
    _with_trace(rows[0], body, problem)
    return rows


def _with_trace(row: Row, body: dict[str, Any], problem: BenchProblem) -> Row:
    """Keep the search tree when the run asked for it (`--param return_trace=true`),
    with the question, so the search explorer can open the row."""
    if body.get("trace") is not None:
        row.update(trace=body["trace"], question=problem.question)
    return row


def _graded(
    problem: BenchProblem,
    base: Row,
    label: str,
    setting: str,
    answer: str | None,
    usage: dict[str, Any],
    answer_text: str | None,
) -> Row:
    result = grade(problem.grader, problem.gold, answer)
    row = {
        **base,
        "label": label,
        "setting": setting,
        "answer": answer,
        "correct": result.correct,
        "parsed": result.parsed,
        "usage": usage,
    }
    if not result.parsed and answer_text:
        row["answer_tail"] = answer_text[-_TAIL_CHARS:]
    return row


def _headline(cell: Cell, rows: list[Row]) -> Row:
    """The row that stands for the request itself: the one the server answered."""
    if not cell.subsample:
        return rows[0]
    wanted = cell.params.get("selection", "majority")
    at_max = [r for r in rows if r["label"].endswith("/" + wanted)]
    return at_max[-1]


class _Progress:
    """A progress bar with accuracy so far and generated tokens per second."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, disable=not enabled, file=sys.stderr, unit="req", dynamic_ncols=True
        )
        self.correct = self.graded = self.tokens = 0
        self.started = time.monotonic()

    def update(self, headline: Row, generated_tokens: int) -> None:
        self.graded += 1
        self.correct += bool(headline["correct"])
        self.tokens += generated_tokens
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix(
            acc=f"{self.correct / self.graded:.3f}",
            tok_s=f"{self.tokens / elapsed:.0f}",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


async def run_sweep(
    problems: list[BenchProblem],
    cells: list[Cell],
    results: ResultsFile,
    options: SweepOptions,
    to_rows: RowMaker = rows_for,
) -> SweepOutcome:
    """Send every (cell, problem) not yet in `results`; `to_rows` shapes what is stored.

    The first row `to_rows` returns for a cell without subsampling stands for the
    request in the progress bar (its `correct`), so a custom row maker puts the
    server's own answer first.
    """
    outcome = SweepOutcome()
    todo: asyncio.Queue[tuple[Cell, BenchProblem]] = asyncio.Queue()
    for cell in cells:
        for problem in problems:
            if (problem.dataset, problem.id, cell.key) in results.done:
                outcome.skipped += 1
            else:
                todo.put_nowait((cell, problem))
    if todo.empty():
        return outcome
    progress = _Progress(todo.qsize(), options.progress)
    async with SolveClient(options.server, options.timeout_s, options.retry) as client:
        model = await client.model_name()

        async def worker() -> None:
            while not todo.empty():
                cell, problem = todo.get_nowait()
                try:
                    solved = await client.solve(cell.request(problem.question, problem.id))
                except RetriesExhausted as error:
                    outcome.failures.append(f"{problem.id} {cell.label} {cell.setting}: {error}")
                    continue
                except RequestRejected as error:
                    raise RequestRejected(
                        f"{cell.strategy} {cell.setting} ({problem.id}): {error}"
                    ) from None
                rows = to_rows(problem, cell, solved, model)
                results.append(rows)
                outcome.requests += 1
                headline = _headline(cell, rows)
                if cell.subsample and headline["answer"] != solved.body["answer"]:
                    outcome.selection_mismatches += 1
                progress.update(headline, solved.body["usage"]["generated_tokens"])

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, options.concurrency)):
                    group.create_task(worker())
        except* RequestRejected as rejected:
            raise rejected.exceptions[0] from None
        finally:
            progress.close()
    return outcome

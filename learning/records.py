"""The collected row: one problem, one request, every sample with its text, steps and grade.

One row per (problem, request shape), stored with the bench's resumable results
file, so `ponder learn collect` resumes exactly as `ponder bench` does. A row keeps
everything later labelling needs without another request: the question and system
prompt as sent, the gold, and for each sample its text, its steps, its tokens, its
score and its grade. Step labels are not stored here; they are computed at export
(`outcome`) or, later, kept in a file of their own keyed by (problem, cell, sample
`index`) (`mc`), so this file stays append-only.
"""

from __future__ import annotations

from clients.bench.client import Solved
from clients.bench.datasets import BenchProblem
from clients.bench.grading import grade
from clients.bench.grid import REWARD_SELECTIONS, Cell
from clients.bench.store import Row
from clients.bench.sweep import graded_sample, request_row
from search_strategies.steps import DEFAULT_STEP_DELIMITER, split_steps

#: File of a collect folder (a bench folder has `results.jsonl`).
COLLECTED_NAME = "collected.jsonl"
MANIFEST_NAME = "manifest.json"
#: Bumped when a row's fields change meaning, so old folders can still be read.
ROW_FORMAT = 1
#: The server's default system prompt (server/settings.py). Collect sends it
#: explicitly, so every row says what the model was asked whatever the server's
#: configured default; a test keeps the two equal.
DEFAULT_SYSTEM_PROMPT = "Solve the problem step by step. Put the final answer in \\boxed{}."


def step_delimiter(params: dict[str, object]) -> str:
    """Where the server cuts steps for this request: a step search's own delimiter, else
    the default blank line (the server does not return steps, so they are cut here the
    same way, with the server's own `split_steps`)."""
    return str(params.get("step_delimiter") or DEFAULT_STEP_DELIMITER)


def score_kind(cell: Cell) -> str:
    """What a sample's `score` is: its reward, or for majority voting its answer's vote share."""
    if cell.strategy == "best_of_n":
        return "reward" if cell.params.get("selection") in REWARD_SELECTIONS else "vote_share"
    return "strategy"


def collect_rows(problem: BenchProblem, cell: Cell, solved: Solved, model: str) -> list[Row]:
    """The one row a collect request yields (a `RowMaker` for the bench's sweep)."""
    body = solved.body
    delimiter = step_delimiter(cell.params)
    picked = grade(problem.grader, problem.gold, body.get("answer"))
    samples = [
        {
            **graded_sample(problem, candidate, keep_text=True),
            "index": index,
            "steps": split_steps(candidate.get("text", ""), delimiter),
        }
        for index, candidate in enumerate(body["candidates"])
    ]
    row: Row = {
        **request_row(problem, cell, solved, model),
        "row_format": ROW_FORMAT,
        "question": problem.question,
        "grader": problem.grader,
        "system_prompt": cell.params.get("system_prompt"),
        "answer": body.get("answer"),
        "correct": picked.correct,
        "parsed": picked.parsed,
        "usage": body["usage"],
        "step_delimiter": delimiter,
        "score_kind": score_kind(cell),
        "samples": samples,
    }
    if body.get("trace") is not None:
        row["trace"] = body["trace"]
    return [row]

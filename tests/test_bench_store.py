"""`ponder bench` results file: atomic per-response appends, torn tails, done keys."""

from __future__ import annotations

import json
from pathlib import Path

from clients.bench.store import ResultsFile, read_rows


def _row(problem: str, label: str) -> dict:
    return {"dataset": "d", "problem_id": problem, "cell": "c1", "label": label}


def test_rows_survive_reopening_and_mark_their_requests_done(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    results = ResultsFile(path)
    results.append([_row("p1", "a"), _row("p1", "b")])
    results.close()
    reopened = ResultsFile(path)
    assert reopened.done == {("d", "p1", "c1")}
    assert [r["label"] for r in reopened.rows] == ["a", "b"]
    reopened.close()


def test_a_torn_last_line_is_cut_and_new_rows_start_on_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_row("p1", "a")) + "\n" + '{"dataset": "d", "problem_id": "p2"')
    assert len(read_rows(path)) == 1
    results = ResultsFile(path)
    assert results.done == {("d", "p1", "c1")}
    results.append([_row("p2", "a")])
    results.close()
    assert [r["problem_id"] for r in read_rows(path)] == ["p1", "p2"]

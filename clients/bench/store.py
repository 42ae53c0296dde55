"""The results file: one JSON row per (problem, reported line), appended as answers arrive.

Resume rests on two rules. All rows one response produces (a best-of-N run yields
one row per selection and N) go to disk in ONE `write` on an O_APPEND descriptor,
so a killed run leaves either all of them or a torn last line, never half a set.
On open, a torn last line is cut off, and the (problem, cell) pairs already on
disk are skipped, so a restarted run neither repeats work nor duplicates rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Row = dict[str, Any]

#: The results file's name in a bench or collect folder.
RESULTS_NAME = "results.jsonl"


def results_path(path: Path) -> Path:
    """A results file given as itself or as its folder."""
    return path / RESULTS_NAME if path.is_dir() else path


def done_key(row: Row) -> tuple[str, str, str]:
    """What makes a request unnecessary on resume: dataset, problem, request shape."""
    return row["dataset"], row["problem_id"], row["cell"]


def read_rows(path: Path) -> list[Row]:
    """Rows of a results file; a torn (unterminated, unparsable) last line is ignored."""
    rows: list[Row] = []
    if not path.exists():
        return rows
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                break  # torn write of a killed run; `ResultsFile` cuts it off
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON row ({error})") from None
    return rows


class ResultsFile:
    """Appends rows atomically per response and knows which requests are done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self.rows = read_rows(path)
        self.done = {done_key(row) for row in self.rows}
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, rows: Iterable[Row]) -> None:
        batch = list(rows)
        if not batch:
            return
        data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in batch).encode()
        written = os.write(self._fd, data)
        if written != len(data):  # regular files do not short-write short of a full disk
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        self.rows.extend(batch)
        self.done.update(done_key(row) for row in batch)

    def close(self) -> None:
        os.close(self._fd)

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)

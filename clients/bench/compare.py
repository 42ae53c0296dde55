"""`ponder bench compare`: lines from several result folders on one plot, and paired
sign tests between two (label, setting) cells on the problems both answered.

Result folders of different servers (a base policy and a fine-tuned one, one reward
and another) are separate `--out` folders; this puts their curves on one set of axes
with the bench's Wilson intervals, and tests a difference the way the docs quote it:
on the same problems, wins against losses, a two-sided exact sign test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from clients.bench.report import PlotPoint, plot_data, summarize, write_plot
from clients.bench.store import Row, read_rows, results_path


@dataclass(frozen=True)
class CellRef:
    """`RESULTS:LABEL[:SETTING]`: rows of one line (and one point) of a results file."""

    results: Path
    label: str
    setting: str | None = None

    @classmethod
    def parse(cls, text: str, need_setting: bool) -> CellRef:
        parts = text.split(":")
        if len(parts) not in ((3,) if need_setting else (2, 3)):
            shape = "RESULTS:LABEL:SETTING" if need_setting else "RESULTS:LABEL"
            raise ValueError(f"{text!r}: expected {shape}")
        path = Path(parts[0])
        results = results_path(path)
        if not results.is_file():
            raise FileNotFoundError(f"{text!r}: no results file at {results}")
        return cls(results, parts[1], parts[2] if len(parts) == 3 else None)

    def rows(self, cache: dict[Path, list[Row]]) -> list[Row]:
        if self.results not in cache:
            cache[self.results] = read_rows(self.results)
        rows = [
            r
            for r in cache[self.results]
            if r["label"] == self.label and self.setting in (None, r["setting"])
        ]
        if not rows:
            settings = sorted(
                {r["setting"] for r in cache[self.results] if r["label"] == self.label}
            )
            labels = sorted({r["label"] for r in cache[self.results]})
            known = ", ".join(settings) if settings else "labels: " + ", ".join(labels)
            raise ValueError(f"no rows for {self.label}:{self.setting} in {self.results} ({known})")
        return rows


@dataclass(frozen=True)
class PairedTest:
    a: str
    b: str
    problems: int
    a_correct: int
    b_correct: int
    wins: int  # a right, b wrong
    losses: int  # a wrong, b right
    p_value: float


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (binomial, p = 1/2) on the discordant pairs."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(a_rows: list[Row], b_rows: list[Row], a_name: str, b_name: str) -> PairedTest:
    """Compare two cells on the problems both answered (by dataset and problem id)."""
    a = {(r["dataset"], r["problem_id"]): bool(r["correct"]) for r in a_rows}
    b = {(r["dataset"], r["problem_id"]): bool(r["correct"]) for r in b_rows}
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"{a_name} and {b_name} share no problem")
    wins = sum(a[k] and not b[k] for k in common)
    losses = sum(b[k] and not a[k] for k in common)
    return PairedTest(
        a_name,
        b_name,
        len(common),
        sum(a[k] for k in common),
        sum(b[k] for k in common),
        wins,
        losses,
        sign_test(wins, losses),
    )


def lines(
    named: list[tuple[str, CellRef]], cache: dict[Path, list[Row]]
) -> dict[str, list[PlotPoint]]:
    """One line per name: its cell's points (all settings), renamed, by tokens."""
    rows = [
        {**row, "label": name, "dataset": "compare"}
        for name, ref in named
        for row in ref.rows(cache)
    ]
    return plot_data(summarize(rows)).get("compare", {})


def lines_table(data: dict[str, list[PlotPoint]]) -> str:
    out = ["| line | setting | accuracy (95% CI) | mean generated tokens |", "|---|---|---|---|"]
    for name, points in data.items():
        for p in points:
            out.append(
                f"| {name} | {p.setting} | {p.accuracy:.2f} ({p.ci95_low:.2f}-{p.ci95_high:.2f}) "
                f"| {p.mean_generated_tokens:.0f} |"
            )
    return "\n".join(out)


def pairs_table(tests: list[PairedTest]) -> str:
    out = [
        "| A | B | problems | A right | B right | A wins / B wins | sign test p |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        out.append(
            f"| {t.a} | {t.b} | {t.problems} | {t.a_correct} | {t.b_correct} | "
            f"{t.wins} / {t.losses} | {t.p_value:.3g} |"
        )
    return "\n".join(out)


def plot(data: dict[str, list[PlotPoint]], path: Path, title: str) -> None:
    write_plot({title or "accuracy vs compute": data}, path)

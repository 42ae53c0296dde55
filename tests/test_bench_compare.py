"""`ponder bench compare`: lines across result folders and paired sign tests, on the
published results (real rows) and on rows built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.bench.cli import main as bench_main
from clients.bench.compare import paired, sign_test

PUBLISHED = Path(__file__).resolve().parent.parent / "clients" / "bench" / "published"


def test_sign_test_is_the_exact_two_sided_binomial() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(16, 4) == pytest.approx(
        2 * sum(__import__("math").comb(20, i) for i in range(5)) / 2**20
    )
    assert sign_test(16, 4) == pytest.approx(0.01182, abs=1e-5)
    assert sign_test(6, 0) == pytest.approx(2 / 64)
    assert sign_test(3, 9) == sign_test(9, 3)


def _row(problem: str, correct: bool, label: str = "x", setting: str = "n=1") -> dict:
    return {
        "dataset": "d",
        "problem_id": problem,
        "correct": correct,
        "label": label,
        "setting": setting,
    }


def test_pairs_only_count_problems_both_answered() -> None:
    a = [_row("p1", True), _row("p2", True), _row("p3", False), _row("only-a", True)]
    b = [_row("p1", False), _row("p2", True), _row("p3", True), _row("only-b", False)]
    test = paired(a, b, "A", "B")
    assert (test.problems, test.a_correct, test.b_correct) == (3, 2, 2)
    assert (test.wins, test.losses) == (1, 1) and test.p_value == 1.0
    with pytest.raises(ValueError, match="share no problem"):
        paired([_row("x", True)], [_row("y", True)], "A", "B")


def test_compare_reads_the_published_folders(tmp_path, capsys) -> None:
    """The docs' revision vs one-sample comparison (the 2026-11-30 sweep): 16 wins,
    5 losses, p = 0.03."""
    plot = tmp_path / "plot.png"
    code = bench_main(
        [
            "compare",
            "--line",
            f"verifier={PUBLISHED / 'arithmetic-rewards'}:arithmetic/weighted",
            "--pair",
            f"{PUBLISHED / 'arithmetic-100'}:revision:budget.max_tokens=128",
            f"{PUBLISHED / 'arithmetic-100'}:best_of_n/weighted:n=1",
            "--plot",
            str(plot),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and plot.stat().st_size > 0
    assert "| verifier | n=8 | 0.20 (0.13-0.29) |" in out
    assert "| 100 | 25 | 14 | 16 / 5 | 0.0266 |" in out


def test_bad_references_are_refused(tmp_path, capsys) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(_row("p1", True, label="beam", setting="b=1")) + "\n")
    for argv, message in [
        (["--line", f"{tmp_path}:beam"], "expected NAME=RESULTS:LABEL"),
        (["--line", f"a={tmp_path / 'none'}:beam"], "no results file"),
        (["--line", f"a={tmp_path}:other"], "labels: beam"),
        (["--pair", f"{tmp_path}:beam:b=2", f"{tmp_path}:beam:b=1"], "b=1"),
        (["--pair", f"{tmp_path}:beam", f"{tmp_path}:beam:b=1"], "RESULTS:LABEL:SETTING"),
    ]:
        assert bench_main(["compare", *argv]) == 2
        error = capsys.readouterr().err
        assert error.startswith("ponder bench compare:") and message in error, error

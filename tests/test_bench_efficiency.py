"""`ponder bench efficiency`: the compute a line needs to match the reference's best
accuracy, on rows built here (figures worked out by hand) and over the CLI."""

from __future__ import annotations

import json

import pytest

from clients.bench.cli import main as bench_main
from clients.bench.datasets import BenchProblem
from clients.bench.efficiency import auto_choices, by_level, matches
from clients.bench.grid import expand, parse_run
from clients.bench.report import summarize
from clients.bench.sweep import Solved, rows_for


def _rows(label: str, setting: str, tokens: int, correct: list[bool], level: int = 1) -> list:
    return [
        {
            "dataset": "arithmetic",
            "problem_id": f"p{i}",
            "level": level,
            "label": label,
            "setting": setting,
            "correct": ok,
            "parsed": True,
            "latency_s": 1.0,
            "usage": {"generated_tokens": tokens, "reward_calls": 1},
        }
        for i, ok in enumerate(correct)
    ]


# Best-of-N reaches 3/4 at 400 tokens (and again at 800: the cheaper point counts);
# "search" reaches it at 100 tokens (saving 4x); "weak" never does (best 2/4).
ROWS = [
    *_rows("best_of_n/weighted", "n=1", 100, [True, False, False, False]),
    *_rows("best_of_n/weighted", "n=4", 400, [True, True, True, False]),
    *_rows("best_of_n/weighted", "n=8", 800, [True, True, True, False]),
    *_rows("search", "budget.max_tokens=64", 50, [True, True, False, False]),
    *_rows("search", "budget.max_tokens=128", 100, [True, True, True, False]),
    *_rows("search", "budget.max_tokens=256", 200, [True, True, True, True]),
    *_rows("weak", "budget.max_tokens=128", 120, [True, True, False, False]),
]


def test_each_line_is_read_at_its_cheapest_point_reaching_the_target() -> None:
    target, found = matches(summarize(ROWS), "best_of_n/weighted")
    assert (target.setting, target.accuracy, target.mean_generated_tokens) == ("n=4", 0.75, 400)
    search, weak = found
    assert search.point is not None and search.point.setting == "budget.max_tokens=128"
    assert search.saving(target) == pytest.approx(4.0)
    assert search.best.setting == "budget.max_tokens=256"
    assert weak.point is None and weak.saving(target) is None
    assert weak.best.accuracy == 0.5


def test_an_unknown_reference_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no line 'best_of_n/max_reward'.*search, weak"):
        matches(summarize(ROWS), "best_of_n/max_reward")


def test_by_level_splits_each_cell() -> None:
    rows = [
        *_rows("search", "budget.max_tokens=128", 100, [True, True], level=1),
        *_rows("search", "budget.max_tokens=128", 100, [False, True, False, False], level=2),
    ]
    table = by_level(rows)
    assert "| strategy | setting | mean tokens | level 1 | level 2 |" in table
    assert (
        "| search | budget.max_tokens=128 | 100 | 1.00 (0.34-1.00, 2) | 0.25 (0.05-0.70, 4) |"
        in table
    )
    with pytest.raises(ValueError, match="no row carries a level"):
        by_level([{**rows[0], "level": None}])


def test_the_cli_prints_both_tables(tmp_path, capsys) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    assert bench_main(["efficiency", str(tmp_path), "--by-level"]) == 0
    out = capsys.readouterr().out
    assert "reference best_of_n/weighted at its best: 0.75 (0.30-0.95) at 400 tok (n=4)" in out
    assert "| search | 0.75 (0.30-0.95) at 100 tok (budget.max_tokens=128) | 4.00x |" in out
    assert "| weak | never | - | 0.50 (0.15-0.85) at 120 tok (budget.max_tokens=128) |" in out
    assert "level 1" in out
    assert bench_main(["efficiency", str(tmp_path), "--reference", "nope"]) == 2
    assert "no line 'nope'" in capsys.readouterr().err


def _auto_body(difficulty: str, chosen: str | None, answer: str) -> dict:
    return {
        "answer": answer,
        "answer_text": f"\\boxed{{{answer}}}",
        "candidates": [],
        "usage": {"prompt_tokens": 10, "generated_tokens": 90, "reward_calls": 1},
        "timing": {"total_s": 0.1, "search_s": 0.1},
        "stopped_reason": "token_budget",
        "search": {"auto": {"difficulty": difficulty, "chosen_strategy": chosen, "params": {}}},
    }


def test_bench_rows_record_what_auto_chose_and_efficiency_counts_it() -> None:
    cell, _ = expand([parse_run("auto budget.max_tokens=128,256")])
    rows = []
    for index, (difficulty, chosen, answer) in enumerate(
        [("hard", "mcts", "12"), ("hard", "mcts", "5"), ("easy", None, "12")]
    ):
        problem = BenchProblem("toy", f"toy-{index}", "3 bags of 4?", "12", "numeric")
        body = _auto_body(difficulty, chosen, answer)
        rows += rows_for(problem, cell, Solved(body, 0.1, 1), "toy")
    assert rows[0]["auto"] == {"difficulty": "hard", "chosen": "mcts"}
    table = auto_choices(rows)
    assert table is not None
    assert "| budget.max_tokens=128 | easy | the probe's pick | 1 | 1.00 |" in table
    assert "| budget.max_tokens=128 | hard | mcts | 2 | 0.50 |" in table
    # A fixed strategy's rows record nothing, and a file of them has no table.
    assert auto_choices([{**row, "auto": None} for row in rows]) is None

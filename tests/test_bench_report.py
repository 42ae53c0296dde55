"""`ponder bench` report: summary with CIs, unparseable list, plot data and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.bench.cli import main as bench_main
from clients.bench.coverage import coverage, coverage_table
from clients.bench.report import plot_data, summarize, wilson_interval, write_report


def _row(
    label: str,
    setting: str,
    problem: str,
    correct: bool,
    tokens: int,
    parsed: bool = True,
    dataset: str = "arithmetic",
) -> dict:
    return {
        "dataset": dataset,
        "label": label,
        "setting": setting,
        "problem_id": problem,
        "correct": correct,
        "parsed": parsed,
        "answer": "1" if parsed else None,
        "usage": {"generated_tokens": tokens, "reward_calls": 1},
        "latency_s": 2.0,
        "model": "tiny",
        "cell": "c",
    }


ROWS = [
    _row("best_of_n/majority", "n=1", "p1", True, 100),
    _row("best_of_n/majority", "n=1", "p2", False, 120, parsed=False),
    _row("best_of_n/majority", "n=4", "p1", True, 400),
    _row("best_of_n/majority", "n=4", "p2", True, 440),
    _row("beam_search", "budget.max_tokens=512", "p1", False, 500),
    _row("beam_search", "budget.max_tokens=512", "p2", True, 520),
    _row("beam_search", "budget.max_tokens=1024", "p1", True, 900),
    _row("beam_search", "budget.max_tokens=1024", "p2", True, 1000),
    _row("beam_search", "budget.max_tokens=1024", "g1", True, 50, dataset="gsm8k"),
]


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 20)[0] == 0.0
    low, high = wilson_interval(10, 20)
    assert low == pytest.approx(0.2993, abs=1e-4) and high == pytest.approx(0.7007, abs=1e-4)
    assert wilson_interval(20, 20)[1] == 1.0


def test_summary_per_dataset_line_and_setting() -> None:
    summary = {(s.dataset, s.label, s.setting): s for s in summarize(ROWS)}
    assert len(summary) == 5
    first = summary[("arithmetic", "best_of_n/majority", "n=1")]
    assert (first.problems, first.correct, first.accuracy, first.unparseable) == (2, 1, 0.5, 1)
    assert first.mean_generated_tokens == 110 and first.mean_reward_calls == 1
    assert first.ci95_low < 0.5 < first.ci95_high


def test_plot_has_one_line_per_strategy_ordered_by_tokens() -> None:
    data = plot_data(summarize(ROWS))
    assert set(data) == {"arithmetic", "gsm8k"}
    assert set(data["arithmetic"]) == {"best_of_n/majority", "beam_search"}
    beam = data["arithmetic"]["beam_search"]
    assert [p.mean_generated_tokens for p in beam] == [510, 950]
    assert [p.accuracy for p in beam] == [0.5, 1.0]


def test_written_report_png_and_its_data(tmp_path: Path) -> None:
    write_report(ROWS, tmp_path)
    png = tmp_path / "plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    drawn = json.loads((tmp_path / "plot.json").read_text())
    assert {label: len(points) for label, points in drawn["arithmetic"].items()} == {
        "best_of_n/majority": 2,
        "beam_search": 2,
    }
    unparseable = (tmp_path / "unparseable.csv").read_text().splitlines()
    assert len(unparseable) == 2 and ",p2," in unparseable[1]
    assert len((tmp_path / "summary.csv").read_text().splitlines()) == 6


def test_report_command_rebuilds_from_a_results_file(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert bench_main(["report", str(results), "--out", str(tmp_path / "again")]) == 0
    assert "| arithmetic | beam_search | budget.max_tokens=1024 | 1.00" in capsys.readouterr().out
    assert (tmp_path / "again" / "plot.png").exists()
    assert bench_main(["report", str(tmp_path / "missing.jsonl")]) == 2
    # Its folder works too (as for compare, ensemble and efficiency): outputs beside it.
    assert bench_main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "plot.png").exists()


def test_ponder_bench_is_a_subcommand_of_ponder(capsys) -> None:
    from server.cli import main as ponder_main

    with pytest.raises(SystemExit) as exited:
        ponder_main(["bench", "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert "--concurrency" in help_text and "ponder bench report" in help_text
    assert ponder_main(["bench", "--dataset", "nope.jsonl", "--out", "/tmp/x"]) == 2


def _source(problem: str, samples: list[tuple[str, float]], gold: str = "12") -> dict:
    """A best-of-N source row: every sample's answer and reward (graded from the gold)."""
    return {
        **_row("best_of_n/weighted", "n=1", problem, False, 10),
        "gold": gold,
        "samples": [{"answer": answer, "score": score} for answer, score in samples],
    }


def test_coverage_pass_at_k_and_reward_separation() -> None:
    rows = [
        _source("p1", [("7", 0.9), ("12", 0.8), ("12.0", 0.7), ("5", 0.1)]),
        _source("p2", [("3", 0.2), ("4", 0.2), ("6", 0.2), ("$12", 1.0)]),
        _row("beam_search", "budget.max_tokens=512", "p1", True, 500),  # no samples: ignored
    ]
    table = {c.k: c for c in coverage(rows)}
    assert sorted(table) == [1, 2, 4]
    assert [table[k].pass_at_k for k in (1, 2, 4)] == [0.0, 0.5, 1.0]
    assert table[4].right_sample_share == 3 / 8  # 12, 12.0 and $12 grade as right
    assert table[4].mean_reward_right == pytest.approx((0.8 + 0.7 + 1.0) / 3)
    # Right rewards 0.8, 0.7, 1.0 against wrong 0.9, 0.1, 0.2, 0.2, 0.2: 4 + 4 + 5 wins.
    assert table[4].reward_auroc == pytest.approx(13 / 15)
    assert table[1].reward_auroc is None  # no right sample among the first ones
    assert "| arithmetic | best_of_n | 4 | 2 | 1.00 | 0.38 |" in coverage_table(
        list(table.values())
    )


def test_coverage_prefers_the_grade_the_sweep_stored() -> None:
    row = _source("p1", [("12", 0.5)])
    row["samples"][0]["correct"] = False  # e.g. a math-verify grade the gold's guess lacks
    assert coverage([row])[0].pass_at_k == 0.0

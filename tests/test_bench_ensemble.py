"""`ponder bench ensemble`: a score-level ensemble replayed from runs that drew the same
samples, checked against selections and AUROCs computed by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from clients.bench.cli import main as bench_main
from clients.bench.ensemble import EnsembleError, Member, ensemble_rows

#: One problem (gold 5), three samples: answers and per-reward scores.
ANSWERS = ["5", "7", "7"]
SCORES = {"a": [0.9, 0.2, 0.3], "b": [0.1, 0.8, 0.6]}


def _run(run: str, answers: list[str], scores: list[float], problem: str = "p1") -> list[dict]:
    """The rows a bench best-of-3 run keeps: the source row (with samples) and its
    weighted pick at n=3 (which carries the reward usage)."""
    base = {
        "dataset": "arithmetic",
        "problem_id": problem,
        "level": 1,
        "gold": "5",
        "cell": "c",
        "strategy": "best_of_n",
        "params": {"n": 3, "selection": "weighted"},
        "budget": {},
        "reward": run,
        "model": "m",
        "stopped_reason": "completed",
        "latency_s": 1.0,
        "server_s": 1.0,
        "attempts": 1,
    }
    samples = [
        {
            "answer": a,
            "score": s,
            "num_tokens": 10 + i,
            "mean_logprob": -0.5,
            "finish_reason": "stop",
            "correct": a == "5",
        }
        for i, (a, s) in enumerate(zip(answers, scores))
    ]
    source = {
        **base,
        "label": f"{run}/majority",
        "setting": "n=1",
        "answer": answers[0],
        "correct": answers[0] == "5",
        "parsed": True,
        "samples": samples,
        "usage": {
            "prompt_tokens": 20,
            "generated_tokens": 10,
            "reward_calls": 0,
            "reward_tokens": 0,
        },
    }
    weighted = {
        **base,
        "label": f"{run}/weighted",
        "setting": "n=3",
        "answer": "?",
        "correct": False,
        "parsed": True,
        "usage": {
            "prompt_tokens": 20,
            "generated_tokens": 33,
            "reward_calls": 1,
            "reward_tokens": 50,
        },
    }
    return [source, weighted]


def _pick(rows: list[dict], label: str, setting: str) -> dict:
    return next(r for r in rows if r["label"] == label and r["setting"] == setting)


def test_scores_are_the_weighted_mean_and_selection_replays_on_them() -> None:
    a, b = _run("a", ANSWERS, SCORES["a"]), _run("b", ANSWERS, SCORES["b"])
    # Equal weights: 5 -> 0.5, 7 -> 0.5 + 0.45 = 0.95 summed (weighted picks 7);
    # max-reward picks the single best sample, 7 at 0.5 vs 5 at 0.5 -> the first.
    rows = ensemble_rows([Member(a, "a", 1.0), Member(b, "b", 1.0)], "ens")
    source = next(r for r in rows if r.get("samples"))
    assert [s["score"] for s in source["samples"]] == pytest.approx([0.5, 0.5, 0.45])
    assert _pick(rows, "ens/weighted", "n=3")["answer"] == "7"
    assert _pick(rows, "ens/weighted", "n=3")["correct"] is False
    assert _pick(rows, "ens/weighted", "n=3")["usage"]["reward_tokens"] == 100
    # A reward that reports no tokens (a verifier) still made its call.
    free = _run("b", ANSWERS, SCORES["b"])
    free[1]["usage"]["reward_tokens"] = 0
    rows = ensemble_rows([Member(a, "a", 1.0), Member(free, "b", 1.0)], "ens")
    assert _pick(rows, "ens/weighted", "n=3")["usage"]["reward_calls"] == 2
    # Weighting a 3:1: 5 -> 0.7, each 7 -> 0.35 / 0.375, summed 0.725: still 7 weighted,
    # but max-reward now picks the right sample.
    rows = ensemble_rows([Member(a, "a", 3.0), Member(b, "b", 1.0)], "ens")
    assert _pick(rows, "ens/weighted", "n=3")["answer"] == "7"
    assert _pick(rows, "ens/max_reward", "n=3")["answer"] == "5"
    assert _pick(rows, "ens/max_reward", "n=3")["correct"] is True
    # n=1 is the first sample whatever the rule; every (selection, n) is there once.
    assert _pick(rows, "ens/majority", "n=1")["answer"] == "5"
    assert len(rows) == 3 * 3


def test_other_samples_or_no_samples_are_refused() -> None:
    a = _run("a", ANSWERS, SCORES["a"])
    other = _run("b", ["5", "7", "8"], SCORES["b"])
    with pytest.raises(EnsembleError, match="drew different samples"):
        ensemble_rows([Member(a, "a", 1.0), Member(other, "b", 1.0)], "ens")
    with pytest.raises(EnsembleError, match="kept no samples"):
        ensemble_rows([Member(a, "a", 1.0), Member(a, "nope", 1.0)], "ens")
    elsewhere = _run("b", ANSWERS, SCORES["b"], problem="p2")
    with pytest.raises(EnsembleError, match="share no problem"):
        ensemble_rows([Member(a, "a", 1.0), Member(elsewhere, "b", 1.0)], "ens")
    with pytest.raises(EnsembleError, match="positive"):
        ensemble_rows([Member(a, "a", 1.0), Member(a, "a", 0.0)], "ens")


def test_cli_writes_a_folder_report_and_compare_read(tmp_path: Path, capsys) -> None:
    results = tmp_path / "runs" / "results.jsonl"
    results.parent.mkdir()
    rows = _run("a", ANSWERS, SCORES["a"]) + _run("b", ANSWERS, SCORES["b"])
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ens"
    assert bench_main(["ensemble", f"{results.parent}:a:3", f"{results}:b", "--out", str(out)]) == 0
    with (out / "coverage.csv").open() as f:
        coverage = {int(r["k"]): r for r in csv.DictReader(f)}
    # Ensemble scores 0.7 (right) vs 0.35, 0.375 (wrong): AUROC 1 at k = 2 (0.7 vs 0.35).
    assert float(coverage[2]["reward_auroc"]) == 1.0
    assert (
        bench_main(
            ["compare", "--pair", f"{out}:ensemble/max_reward:n=3", f"{results}:a/majority:n=1"]
        )
        == 0
    )
    assert "| 1 | 1 | 1 | 0 / 0 |" in capsys.readouterr().out
    # A second run into the same folder is refused, as is a malformed reference.
    assert bench_main(["ensemble", f"{results}:a", f"{results}:b", "--out", str(out)]) == 2
    assert bench_main(["ensemble", f"{results}", f"{results}:b", "--out", str(tmp_path / "x")]) == 2
    assert (
        bench_main(["ensemble", f"{results}:a:w", f"{results}:b", "--out", str(tmp_path / "y")])
        == 2
    )
    err = capsys.readouterr().err
    assert "exists" in err and "RESULTS:RUN" in err and "number" in err

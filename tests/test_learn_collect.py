"""`ponder learn collect`: searches over HTTP into graded samples, resumable, never on
evaluation problems; and collect -> export end to end against an in-process server
with a scripted policy (no engine; a real-engine test is to come)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clients.bench.datasets import Subset, load_dataset
from clients.bench.store import read_rows
from learning.collect import OverlapRefused, collect_cell, training_set
from learning.overlap import PUBLISHED_EVAL, eval_set_from_file, published_eval_set
from learning.records import COLLECTED_NAME, DEFAULT_SYSTEM_PROMPT, MANIFEST_NAME
from server.cli import main as ponder_main
from server.settings import DEFAULT_SYSTEM_PROMPT as SERVER_SYSTEM_PROMPT, Settings
from tests.fakes import ScriptedPolicy
from tests.inprocess import StandInBackend, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
RIGHT = "3 * 4 = 12\n\nThe answer is \\boxed{12}."
WRONG = "3 * 4 = 13\n\nThe answer is \\boxed{13}."
RIGHT_TOO = "4 + 4 + 4 = 12\n\nSo there are \\boxed{12}."
UNREACHABLE = "http://127.0.0.1:9"


def _train_file(path: Path, questions: list[str], gold: str = "12") -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": gold}) + "\n" for q in questions))
    return path


def _collect(*args: str) -> int:
    return ponder_main(["learn", "collect", "--no-progress", *args])


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST_NAME).read_text())


def test_collect_then_export_end_to_end_and_resume(tmp_path: Path, capsys) -> None:
    train = _train_file(
        tmp_path / "toy.jsonl",
        [f"Tom has {k} bags with 4 apples in each. How many?" for k in (3, 5, 7)],
    )
    out = tmp_path / "collected"
    backend = StandInBackend(ScriptedPolicy([RIGHT, WRONG, RIGHT_TOO]))
    argv = [
        "--dataset",
        str(train),
        "--samples",
        "4",
        "--reward",
        "arithmetic",
        "--param",
        "max_new_tokens=64",
        "--out",
        str(out),
    ]
    with serve_in_thread(Settings(reward="arithmetic"), backend) as url:
        assert _collect("--server", url, *argv) == 0
        first = capsys.readouterr().out
        assert _collect("--server", url, *argv) == 0  # same command: resumes
        second = capsys.readouterr().out
    assert "none of 3 training problems is in the evaluation set" in first
    assert "3 requests, 0 already done" in first and "0 requests, 3 already done" in second
    rows = read_rows(out / COLLECTED_NAME)
    assert len(rows) == 3  # no duplicates after the resume
    row = rows[0]
    assert row["system_prompt"] == DEFAULT_SYSTEM_PROMPT and row["score_kind"] == "reward"
    assert row["params"]["n"] == 4 and row["params"]["selection"] == "weighted"
    texts = [s["text"] for s in row["samples"]]
    assert texts == [RIGHT, WRONG, RIGHT_TOO, RIGHT]  # every sample came back
    assert [s["correct"] for s in row["samples"]] == [True, False, True, True]
    assert row["samples"][1]["steps"] == ["3 * 4 = 13", "The answer is \\boxed{13}."]
    assert row["samples"][1]["score"] < row["samples"][0]["score"]  # the reward saw the slip
    assert all(s["num_tokens"] == len(s["text"]) for s in row["samples"])  # 1 token a char
    collects = _manifest(out)["collects"]
    assert [c["overlap"]["count"] for c in collects] == [0, 0]
    assert collects[0]["outcome"] == {"requests": 3, "skipped": 0, "failed": 0}
    assert collects[1]["outcome"] == {"requests": 0, "skipped": 3, "failed": 0}

    # Distinct samples per problem: RIGHT, WRONG, RIGHT_TOO.
    for fmt, expected in (("prm", 9), ("dpo", 3), ("sft", 6)):
        target = tmp_path / f"{fmt}.jsonl"
        assert (
            ponder_main(["learn", "export", str(out), "--format", fmt, "--out", str(target)]) == 0
        )
        assert len(target.read_text().splitlines()) == expected
    pair = json.loads((tmp_path / "dpo.jsonl").read_text().splitlines()[0])
    assert pair["chosen"][0]["content"] == RIGHT and pair["rejected"][0]["content"] == WRONG


def test_training_problems_from_the_evaluation_set_are_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    # The bench's default arithmetic seed: these ARE the published evaluation problems.
    assert (
        _collect(
            "--server",
            UNREACHABLE,
            "--dataset",
            "arithmetic",
            "--levels",
            "1,2",
            "--limit",
            "10",
            "--out",
            str(out),
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "refusing to collect: 5 of 10 training problems overlap the evaluation set" in err
    assert "5 by id" in err and "--drop-overlap" in err
    assert not out.exists()  # refused before any folder or request


def test_a_question_equal_to_an_evaluation_question_is_caught_by_text(
    tmp_path: Path, capsys
) -> None:
    gsm8k_eval = load_dataset("gsm8k", PUBLISHED_EVAL[1][1])
    train = _train_file(
        tmp_path / "mine.jsonl",
        ["Fresh question one?", "  " + gsm8k_eval[3].question.upper() + " "],
        gold="5",
    )
    out = tmp_path / "c"
    assert _collect("--server", UNREACHABLE, "--dataset", str(train), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "1 of 2 training problems overlap" in err and "0 by id, 1 by question text" in err
    # --drop-overlap leaves it out and records it before the first request.
    assert (
        _collect(
            "--server",
            UNREACHABLE,
            "--retries",
            "0",
            "--dataset",
            str(train),
            "--drop-overlap",
            "--out",
            str(out),
        )
        == 2
    )
    assert "cannot reach" in capsys.readouterr().err
    (entry,) = _manifest(out)["collects"]
    assert entry["overlap"] == {"count": 1, "by_id": 0, "by_question": 1, "dropped": ["mine-1"]}
    assert entry["train"] == {"requested": 2, "problems": 1, "datasets": ["mine"]}
    assert entry["outcome"]["error"].startswith("unreachable")


def test_a_chosen_evaluation_set_by_seed_or_by_ids(tmp_path: Path, capsys) -> None:
    train = load_dataset("arithmetic", Subset(limit=40, levels=(1, 2), seed=7))
    spec = [
        "--server",
        UNREACHABLE,
        "--dataset",
        "arithmetic",
        "--levels",
        "1,2",
        "--seed",
        "7",
        "--limit",
        "40",
        "--out",
        str(tmp_path / "c"),
    ]
    assert _collect(*spec, "--eval-seed", "7", "--eval-limit", "10") == 2
    assert "10 of 40 training problems overlap" in capsys.readouterr().err
    ids = tmp_path / "eval_ids.txt"
    ids.write_text(f"# held out\n{train[5].id}\n{train[6].id}\n")
    assert _collect(*spec, "--eval-ids", str(ids)) == 2
    assert "2 of 40 training problems overlap the evaluation set (ids in" in (
        capsys.readouterr().err
    )
    bench_results = ROOT / "clients/bench/published/arithmetic-100/results.jsonl"
    from_results = eval_set_from_file(bench_results)
    assert len(from_results.ids) == 100 and not from_results.questions
    assert _collect(*spec, "--eval-ids", str(ids), "--eval-seed", "1") == 2
    assert "not both" in capsys.readouterr().err


def test_published_evaluation_sets_are_the_published_sweeps_problems() -> None:
    """The default evaluation set is what clients/bench/published/ measured on."""
    ids = published_eval_set().ids
    for folder, (name, subset) in zip(("arithmetic-100", "gsm8k-50"), PUBLISHED_EVAL):
        results = ROOT / "clients/bench/published" / folder / "results.jsonl"
        published = {r["problem_id"] for r in read_rows(results)}
        assert published == {p.id for p in load_dataset(name, subset)} and published <= ids
    assert len(ids) == 150


def test_training_set_keeps_order_and_drops_only_overlaps() -> None:
    train = load_dataset("arithmetic", Subset(limit=6, levels=(1,), seed=0))
    eval_set = published_eval_set()
    with pytest.raises(OverlapRefused, match="6 of 6"):
        training_set(train, eval_set, drop_overlap=False)
    assert training_set(train, eval_set, drop_overlap=True).problems == []
    fresh = load_dataset("arithmetic", Subset(limit=6, levels=(2,), seed=0))
    kept = training_set(fresh, eval_set, drop_overlap=False)
    assert kept.problems == fresh and "none of 6" in kept.check_message()


def test_the_request_shape() -> None:
    cell = collect_cell("best_of_n", 8, {"max_new_tokens": 256}, None, DEFAULT_SYSTEM_PROMPT)
    body = cell.request("What is 2+2?", "p-1")
    assert body["n"] == 8 and body["strategy"] == "best_of_n" and "selection" not in body
    assert body["system_prompt"] == DEFAULT_SYSTEM_PROMPT and isinstance(body["seed"], int)
    assert not cell.subsample  # one row per problem, not the bench's best-of-N curves
    weighted = collect_cell("best_of_n", 8, {}, "arithmetic", DEFAULT_SYSTEM_PROMPT)
    assert weighted.request("q", "p")["selection"] == "weighted"
    with pytest.raises(ValueError, match="--samples"):
        collect_cell("best_of_n", 8, {"n": 4}, None, DEFAULT_SYSTEM_PROMPT)


def test_the_default_system_prompt_is_the_servers() -> None:
    assert DEFAULT_SYSTEM_PROMPT == SERVER_SYSTEM_PROMPT


def test_learning_never_imports_the_server() -> None:
    code = (
        "import sys, learning.cli, learning.collect, learning.export, learning.sources; "
        "bad = [m for m in sys.modules if m == 'server' or m.startswith('server.')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_ponder_learn_is_a_subcommand_of_ponder(capsys) -> None:
    assert ponder_main(["learn"]) == 2
    assert "collect" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        ponder_main(["learn", "export", "--help"])
    assert exited.value.code == 0 and "--format" in capsys.readouterr().out

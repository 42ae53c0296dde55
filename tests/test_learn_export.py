"""`ponder learn export`: step labels and TRL dataset files from hand-made collected rows.

The rows are made by the real row maker (`learning.records.collect_rows`) from
hand-written `/v1/solve` bodies, so what is exported is what a collect stores. The
formats are TRL's (https://huggingface.co/docs/trl/dataset_formats): stepwise
supervision {prompt, completions, labels} for PRMTrainer, conversational
preference {prompt, chosen, rejected} for DPOTrainer, conversational language
modelling {messages} for SFTTrainer; each file must load with `datasets`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clients.bench.client import Solved
from clients.bench.datasets import BenchProblem
from clients.bench.grid import expand
from clients.bench.store import ResultsFile
from clients.bench.sweep import rows_for
from learning.cli import main as learn_main
from learning.labels import labeler, outcome_labels
from learning.records import COLLECTED_NAME, DEFAULT_SYSTEM_PROMPT, collect_rows
from learning.sources import load_folder

RIGHT_A = "3 bags of 4 is 3 * 4 = 12.\n\nThe answer is \\boxed{12}."
RIGHT_B = "Each bag has 4.\n\nThree bags: 12.\n\nSo \\boxed{12}."
WRONG = "3 + 4 = 7.\n\nThe answer is \\boxed{7}."
NO_ANSWER = "I am not sure."


def _problem(index: int, gold: str = "12") -> BenchProblem:
    return BenchProblem("toy", f"toy-{index}", f"Question {index}: 3 bags of 4?", gold, "numeric")


def _body(texts: list[str], answers: list[str | None]) -> dict[str, Any]:
    candidates = [
        {
            "text": t,
            "answer": a,
            "mean_logprob": -0.5,
            "finish_reason": "stop",
            "num_tokens": len(t),
            "score": 0.5,
        }
        for t, a in zip(texts, answers)
    ]
    return {
        "answer": answers[0],
        "answer_text": texts[0],
        "candidates": candidates,
        "usage": {
            "prompt_tokens": 10,
            "generated_tokens": sum(len(t) for t in texts),
            "reward_calls": 0,
            "reward_tokens": 0,
        },
        "timing": {"total_s": 0.1, "search_s": 0.1},
        "stopped_reason": "completed",
        "reward": None,
    }


def _collect_cell():
    (cell,) = expand(
        [
            {
                "strategy": "best_of_n",
                "n": 4,
                "subsample": False,
                "system_prompt": DEFAULT_SYSTEM_PROMPT,
            }
        ]
    )
    return cell


def _collected_folder(folder: Path) -> Path:
    """Three problems: mixed (2 right, a duplicate, 2 wrong), all wrong, all right."""
    cell = _collect_cell()
    responses = [
        (_problem(0), [RIGHT_A, WRONG, RIGHT_A, RIGHT_B, NO_ANSWER], ["12", "7", "12", "12", None]),
        (_problem(1), [WRONG, NO_ANSWER], ["7", None]),
        (_problem(2), [RIGHT_B], ["12"]),
    ]
    results = ResultsFile(folder / COLLECTED_NAME)
    for problem, texts, answers in responses:
        results.append(collect_rows(problem, cell, Solved(_body(texts, answers), 0.1, 1), "toy"))
    results.close()
    return folder


def _export(folder: Path, fmt: str, out: Path, *extra: str) -> int:
    return learn_main(["export", str(folder), "--format", fmt, "--out", str(out), *extra])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _load_with_datasets(path: Path, cache: Path):
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def test_collected_rows_keep_every_sample_with_steps_and_grade(tmp_path: Path) -> None:
    folder = _collected_folder(tmp_path)
    (row, *_rest) = _lines(folder / COLLECTED_NAME)
    assert row["question"] == "Question 0: 3 bags of 4?" and row["gold"] == "12"
    assert row["system_prompt"] == DEFAULT_SYSTEM_PROMPT and row["step_delimiter"] == "\n\n"
    assert [s["index"] for s in row["samples"]] == [0, 1, 2, 3, 4]
    assert [s["correct"] for s in row["samples"]] == [True, False, True, True, False]
    assert [s["parsed"] for s in row["samples"]] == [True, True, True, True, False]
    assert row["samples"][3]["steps"] == ["Each bag has 4.", "Three bags: 12.", "So \\boxed{12}."]
    assert row["samples"][0]["num_tokens"] == len(RIGHT_A) and row["score_kind"] == "vote_share"
    assert row["correct"] is True  # the server's own pick, graded


def test_outcome_labels_give_every_step_its_samples_grade(tmp_path: Path) -> None:
    problems = load_folder(_collected_folder(tmp_path)).problems
    mixed = problems[0]
    assert outcome_labels(mixed, mixed.samples[3]) == [True, True, True]
    assert outcome_labels(mixed, mixed.samples[1]) == [False, False]
    assert labeler("outcome") is outcome_labels
    with pytest.raises(ValueError, match="run `ponder learn label"):
        labeler("mc", tmp_path)
    with pytest.raises(ValueError, match="unknown --labels"):
        labeler("vibes")


def test_prm_export_is_stepwise_supervision(tmp_path: Path, capsys) -> None:
    out = tmp_path / "prm.jsonl"
    assert _export(_collected_folder(tmp_path / "c"), "prm", out, "--labels", "outcome") == 0
    rows = _lines(out)
    # Distinct non-empty samples: problem 0 has 4 (RIGHT_A twice), 1 has 2, 2 has 1.
    assert len(rows) == 7 and "7 prm records from 3 problems" in capsys.readouterr().out
    assert rows[0] == {
        "prompt": "Question 0: 3 bags of 4?",
        "completions": ["3 bags of 4 is 3 * 4 = 12.", "The answer is \\boxed{12}."],
        "labels": [True, True],
    }
    assert all(len(r["completions"]) == len(r["labels"]) for r in rows)
    dataset = _load_with_datasets(out, tmp_path / "cache")
    assert set(dataset.column_names) == {"prompt", "completions", "labels"}
    assert dataset.features["labels"].feature.dtype == "bool"
    assert dataset.features["completions"].feature.dtype == "string"


def test_dpo_export_pairs_a_right_and_a_wrong_sample_of_one_problem(tmp_path: Path) -> None:
    out = tmp_path / "dpo.jsonl"
    assert _export(_collected_folder(tmp_path / "c"), "dpo", out) == 0
    rows = _lines(out)
    # Only problem 0 has both: right [A, B] x wrong [WRONG, NO_ANSWER] -> 2 disjoint pairs.
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        (RIGHT_A, WRONG),
        (RIGHT_B, NO_ANSWER),
    ]
    assert rows[0]["prompt"] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Question 0: 3 bags of 4?"},
    ]
    assert rows[0]["chosen"][0]["role"] == rows[0]["rejected"][0]["role"] == "assistant"
    dataset = _load_with_datasets(out, tmp_path / "cache")
    assert set(dataset.column_names) == {"prompt", "chosen", "rejected"}
    assert dataset[0]["prompt"][1]["content"] == "Question 0: 3 bags of 4?"


def test_sft_export_is_conversations_of_right_samples(tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    assert _export(_collected_folder(tmp_path / "c"), "sft", out) == 0
    rows = _lines(out)
    assert [r["messages"][-1]["content"] for r in rows] == [RIGHT_A, RIGHT_B, RIGHT_B]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    dataset = _load_with_datasets(out, tmp_path / "cache")
    assert dataset.column_names == ["messages"] and len(dataset) == 3


def test_an_existing_output_is_refused_unless_overwrite(tmp_path: Path, capsys) -> None:
    folder, out = _collected_folder(tmp_path / "c"), tmp_path / "sft.jsonl"
    out.write_text("keep me\n")
    assert _export(folder, "sft", out) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert _export(folder, "sft", out, "--overwrite") == 0
    assert len(_lines(out)) == 3


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "has neither collected.jsonl"),
        ("", "no rows in"),
        ("not json\n", "not a JSON row"),
        ('{"problem_id": "x"}\n', "row 1 is not a collected row"),
        ('{"samples": 3}\n', "row 1 is not a collected row"),
    ],
)
def test_empty_or_malformed_folders_are_refused(
    tmp_path: Path, capsys, content: str | None, message: str
) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    if content is not None:
        (folder / COLLECTED_NAME).write_text(content)
    assert _export(folder, "prm", tmp_path / "o.jsonl") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_missing_folder_and_no_pairs_are_refused(tmp_path: Path, capsys) -> None:
    assert _export(tmp_path / "nowhere", "sft", tmp_path / "o.jsonl") == 2
    assert "is not a folder" in capsys.readouterr().err
    folder = tmp_path / "c"
    folder.mkdir()
    results = ResultsFile(folder / COLLECTED_NAME)
    results.append(
        collect_rows(_problem(0), _collect_cell(), Solved(_body([RIGHT_A], ["12"]), 0.1, 1), "toy")
    )
    results.close()
    assert _export(folder, "dpo", tmp_path / "o.jsonl") == 2  # one right sample: no pair
    assert "no records" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists() and not list(tmp_path.glob("*.tmp"))


def _bench_folder(folder: Path, keep_texts: bool) -> Path:
    (cell,) = expand([{"strategy": "best_of_n", "n": 4, "selection": "weighted"}])
    results = ResultsFile(folder / "results.jsonl")
    body = _body([RIGHT_A, WRONG, RIGHT_B, WRONG], ["12", "7", "12", "7"])
    results.append(rows_for(_problem(0), cell, Solved(body, 0.1, 1), "toy", keep_texts))
    results.close()
    return folder


def test_a_bench_folder_with_kept_texts_exports(tmp_path: Path, capsys) -> None:
    folder = _bench_folder(tmp_path / "bench", keep_texts=True)
    out = tmp_path / "dpo.jsonl"
    assert _export(folder, "dpo", out) == 0
    assert "assumed the server default" in capsys.readouterr().err
    rows = _lines(out)
    assert len(rows) == 1 and rows[0]["chosen"][0]["content"] == RIGHT_A
    assert rows[0]["prompt"][0]["content"] == DEFAULT_SYSTEM_PROMPT
    prm = tmp_path / "prm.jsonl"
    assert _export(folder, "prm", prm) == 0
    assert _lines(prm)[1] == {
        "prompt": "Question 0: 3 bags of 4?",
        "completions": ["3 + 4 = 7.", "The answer is \\boxed{7}."],
        "labels": [False, False],
    }


def test_a_bench_folder_without_texts_says_how_to_keep_them(tmp_path: Path, capsys) -> None:
    folder = _bench_folder(tmp_path / "bench", keep_texts=False)
    assert _export(folder, "sft", tmp_path / "o.jsonl") == 2
    assert "--keep-texts" in capsys.readouterr().err


def test_the_published_bench_results_keep_no_texts(tmp_path: Path, capsys) -> None:
    published = Path(__file__).resolve().parents[1] / "clients/bench/published/arithmetic-100"
    assert _export(published, "sft", tmp_path / "o.jsonl") == 2
    assert "rerun `ponder bench` with --keep-texts" in capsys.readouterr().err


def test_bench_rows_without_keep_texts_are_unchanged() -> None:
    """`--keep-texts` is opt-in: the default bench row keeps exactly the fields it kept."""
    (cell,) = expand([{"strategy": "best_of_n", "n": 2, "selection": "weighted"}])
    body = _body([RIGHT_A, WRONG], ["12", "7"])
    plain = rows_for(_problem(0), cell, Solved(body, 0.1, 1), "toy")
    assert "question" not in plain[0]
    assert set(plain[0]["samples"][0]) == {
        "answer",
        "score",
        "mean_logprob",
        "num_tokens",
        "finish_reason",
        "correct",
    }
    kept = rows_for(_problem(0), cell, Solved(body, 0.1, 1), "toy", keep_texts=True)
    assert kept[0]["samples"][0]["text"] == RIGHT_A and kept[0]["question"]
    assert [r["answer"] for r in kept] == [r["answer"] for r in plain]


def test_wrong_per_right_keeps_every_right_sample_and_the_contrasts_first(
    tmp_path: Path, capsys
) -> None:
    folder = _collected_folder(tmp_path / "c")
    kept = {}
    for ratio in ("1", "0.5", "0"):
        out = tmp_path / f"prm-{ratio}.jsonl"
        assert _export(folder, "prm", out, "--wrong-per-right", ratio) == 0
        rows = _lines(out)
        kept[ratio] = (
            sum(r["labels"][0] for r in rows),
            [(r["prompt"][:10], r["completions"][0]) for r in rows if not r["labels"][0]],
        )
    # 3 distinct right samples; problem 0's wrong samples (it has right ones too) first.
    assert kept["1"] == (
        3,
        [
            ("Question 0", "3 + 4 = 7."),
            ("Question 0", "I am not sure."),
            ("Question 1", "3 + 4 = 7."),
        ],
    )
    assert kept["0.5"] == (3, [("Question 0", "3 + 4 = 7.")])
    assert kept["0"] == (3, [])
    assert _export(folder, "sft", tmp_path / "x.jsonl", "--wrong-per-right", "1") == 2
    assert "--format prm only" in capsys.readouterr().err

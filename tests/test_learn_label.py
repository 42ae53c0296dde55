"""`ponder learn label` (Monte-Carlo step labels) and `export --labels mc|mc-soft`.

The label logic runs on known rollouts (a scripted policy that continues a prefix in
a known way), over HTTP through an in-process Ponder server, so the request the
labeller sends (best-of-K with `answer_prefix`) is the one the server validates.
The server's continuation of a prefix in real vLLM is tested in test_solve_http.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from learning.mc_labels import (
    MC_LABELS_NAME,
    LabelRequest,
    PrefixResult,
    label_problem,
    rollout_right,
    sample_labels,
    step_prefixes,
)
from learning.sources import Sample, SolvedProblem
from search_strategies.protocols import ChatMessage, Generation, SamplingConfig
from server.cli import main as ponder_main
from server.settings import Settings
from tests.fakes import ScriptedPolicy, char_completion
from tests.inprocess import StandInBackend, serve_in_thread

RIGHT = "3 * 4 = 12\n\nThe answer is \\boxed{12}."
WRONG = "3 * 4 = 13\n\nThe answer is \\boxed{13}."
#: What follows each step-1 prefix, sample i taking option i mod len.
ROLLOUTS = {
    "3 * 4 = 12": ["\n\nSo \\boxed{12}."],
    # A wrong first step from which one rollout in four recovers.
    "3 * 4 = 13": ["\n\nSo \\boxed{13}.", "\n\nThus 13.", "\n\nSo \\boxed{13}.", " no, 12."],
}


@dataclass
class PrefixPolicy:
    """Continues the open assistant turn with the scripted rollouts of its prefix."""

    calls: list[str] = field(default_factory=list)
    model_name: str = "prefix"

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        assert messages[-1].role == "assistant", "a rollout continues an assistant turn"
        return [ord(c) for m in messages for c in m.content]

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        result = []
        for prompt in prompts:
            text = "".join(map(chr, prompt))
            prefix = max((p for p in ROLLOUTS if text.endswith(p)), key=len)
            self.calls.append(prefix)
            options = ROLLOUTS[prefix]
            samples = [
                char_completion(options[i % len(options)], params, -0.5) for i in range(params.n)
            ]
            result.append(Generation(prompt_tokens=len(prompt), completions=tuple(samples)))
        return result


def _problem(samples: list[Sample]) -> SolvedProblem:
    return SolvedProblem("toy", "p0", "cell", "3 bags of 4?", "Solve.", "12", tuple(samples))


def _sample(index: int, text: str, correct: bool) -> Sample:
    return Sample(index, text, tuple(text.split("\n\n")), correct)


# The label logic ----------------------------------------------------------------------


def test_prefixes_are_every_step_but_the_last() -> None:
    sample = Sample(0, "a\n\nb\n\nc", ("a", "b", "c"), True)
    assert step_prefixes(sample) == ["a", "a\n\nb"]
    assert step_prefixes(Sample(0, "a", ("a",), False)) == []


def test_a_rollout_is_graded_on_the_whole_solution() -> None:
    problem = _problem([])
    assert rollout_right(problem, "3 * 4 = 12", "\n\nSo \\boxed{12}.")
    assert not rollout_right(problem, "3 * 4 = 12", "\n\nSo \\boxed{13}.")
    # The continuation writes no answer: the solution's last number is the prefix's.
    assert rollout_right(problem, "3 * 4 = 12", "\n\nDone.")


def test_hard_and_soft_labels_and_the_last_step_is_the_outcome() -> None:
    sample = Sample(0, "a\n\nb\n\nc", ("a", "b", "c"), False)
    results = {"a": PrefixResult(1, 4, 40), "a\n\nb": PrefixResult(0, 4, 30)}
    assert sample_labels(sample, results) == {
        "hard": [True, False, False],
        "soft": [0.25, 0.0, 0.0],
    }


def test_label_problem_rolls_out_each_distinct_prefix_once() -> None:
    samples = [_sample(0, RIGHT, True), _sample(1, WRONG, False), _sample(2, RIGHT, True)]
    sent: list[dict[str, Any]] = []

    async def solve(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        options = ROLLOUTS[body["answer_prefix"]]
        texts = [options[i % len(options)] for i in range(body["n"])]
        return {"candidates": [{"text": t} for t in texts], "usage": {"generated_tokens": 7}}

    request = LabelRequest(4, {"max_new_tokens": 32})
    rows, requests, tokens = asyncio.run(
        label_problem(_problem(samples), samples, request, solve, 5)
    )
    assert requests == 2 and tokens == 14 and len(sent) == 2
    assert {b["answer_prefix"] for b in sent} == set(ROLLOUTS)
    body = sent[0]
    assert body["strategy"] == "best_of_n" and body["selection"] == "majority"
    assert body["n"] == 4 and body["max_new_tokens"] == 32 and body["system_prompt"] == "Solve."
    assert sorted(b["seed"] for b in sent) == [5, 6]
    by_index = {r["index"]: r for r in rows}
    assert by_index[0]["hard"] == [True, True] and by_index[2]["soft"] == [1.0, 1.0]
    assert by_index[1]["hard"] == [True, False] and by_index[1]["soft"] == [0.25, 0.0]


# Over HTTP: collect, label, resume, export -----------------------------------------


def _learn(*argv: str) -> int:
    return ponder_main(["learn", *argv])


def _export(folder: Path, labels: str, target: Path) -> int:
    return _learn(
        "export", str(folder), "--format", "prm", "--labels", labels, "--out", str(target)
    )


@pytest.fixture()
def collected(tmp_path: Path) -> Path:
    train = tmp_path / "toy.jsonl"
    train.write_text(
        "".join(
            json.dumps({"question": f"Tom has {k} bags of 4. How many?", "answer": "12"}) + "\n"
            for k in (3, 5)
        )
    )
    out = tmp_path / "collected"
    backend = StandInBackend(ScriptedPolicy([RIGHT, WRONG]))
    with serve_in_thread(Settings(reward="none"), backend) as url:
        argv = ["--dataset", str(train), "--samples", "2", "--out", str(out), "--no-progress"]
        assert _learn("collect", "--server", url, *argv) == 0
    return out


def test_label_then_export_over_http_and_resume(collected: Path, tmp_path: Path, capsys) -> None:
    policy = PrefixPolicy()
    backend = StandInBackend(policy)  # type: ignore[arg-type]
    argv = ["label", str(collected), "--rollouts", "4", "--param", "max_new_tokens=32"]
    with serve_in_thread(Settings(reward="none"), backend) as url:
        assert _learn(*argv, "--server", url, "--no-progress") == 0
        first = capsys.readouterr().out
        assert _learn(*argv, "--server", url, "--no-progress") == 0  # resumes: nothing to do
        second = capsys.readouterr().out
    assert "4 samples labelled (0 already were), 4 rollout requests of 4" in first
    assert "0 samples labelled (4 already were), 0 rollout requests" in second
    assert sorted(policy.calls) == sorted(list(ROLLOUTS) * 2)  # 2 problems x 2 prefixes
    rows = [json.loads(line) for line in (collected / MC_LABELS_NAME).read_text().splitlines()]
    assert len(rows) == 4 and all(r["rollouts"] == 4 for r in rows)

    exported = {}
    for method in ("outcome", "mc", "mc-soft"):
        target = tmp_path / f"prm-{method}.jsonl"
        assert (
            _learn(
                "export",
                str(collected),
                "--format",
                "prm",
                "--labels",
                method,
                "--out",
                str(target),
            )
            == 0
        )
        records = [json.loads(line) for line in target.read_text().splitlines()]
        exported[method] = {r["completions"][0]: r["labels"] for r in records}
    assert exported["outcome"]["3 * 4 = 13"] == [False, False]
    assert exported["mc"]["3 * 4 = 13"] == [True, False]  # one rollout in four recovers
    assert exported["mc-soft"]["3 * 4 = 13"] == [False, False]  # but not half of them
    assert exported["mc"]["3 * 4 = 12"] == exported["outcome"]["3 * 4 = 12"] == [True, True]


def test_an_mc_export_without_labels_says_how_to_make_them(
    collected: Path, tmp_path, capsys
) -> None:
    target = tmp_path / "prm.jsonl"
    assert (
        _learn("export", str(collected), "--format", "prm", "--labels", "mc", "--out", str(target))
        == 2
    )
    assert "run `ponder learn label" in capsys.readouterr().err and not target.exists()


def test_partly_labelled_folders_export_what_is_labelled(collected: Path, tmp_path, capsys) -> None:
    first = json.loads((collected / "collected.jsonl").read_text().splitlines()[0])
    row = {"problem_id": first["problem_id"], "cell": first["cell"], "index": 0, "rollouts": 4}
    labels = {"hard": [True, True], "soft": [1.0, 1.0]}
    (collected / MC_LABELS_NAME).write_text(json.dumps({**row, **labels}) + "\n")
    target = tmp_path / "prm.jsonl"
    code = _export(collected, "mc", target)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(target.read_text().splitlines()) == 1
    assert "3 samples have no mc labels" in captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rollouts", "0"], "--rollouts must be at least 1"),
        (["--param", "n=3"], "--param cannot set n"),
        (["--param", "answer_prefix=x"], "--param cannot set answer_prefix"),
    ],
)
def test_bad_label_requests_are_refused(collected: Path, capsys, argv, message) -> None:
    assert _learn("label", str(collected), "--server", "http://127.0.0.1:9", *argv) == 2
    assert message in capsys.readouterr().err

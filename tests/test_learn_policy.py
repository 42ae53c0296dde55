"""`ponder learn train-policy`: SFT (expert iteration) and DPO files into a policy folder
that `ponder serve --policy` loads.

Refused inputs are checked without torch (fast tests). Training runs a few TRL steps
on the tiny random-weight Llama of `server/testing/tiny_models.py` (engine-marked
through the `tiny_prms` fixture): on a toy set whose every solution ends in
`\\boxed{7}`, the SFT model must lower its validation loss and, served by a real
`ponder serve --policy` (vLLM), answer 7 to a question it never saw, which the
untrained base does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from learning.cli import main as learn_main
from learning.train_policy import PolicyOptions, load_policy_data, train_policy
from learning.training import CARD_JSON, CARD_MD
from search_strategies.answers import extract_answer
from tests.servers import ENGINE_FLAGS, ponder_command

SYSTEM = {"role": "system", "content": "Solve the problem. Put the final answer in \\boxed{}."}
SOLUTION = "The answer is \\boxed{7}."
HELD_OUT_QUESTION = "Tell me the number of apples in the basket."


def _prompt(i: int) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": f"Question {i}: how many apples are there?"}]


def _sft_rows(count: int) -> list[dict[str, Any]]:
    return [
        {"messages": [*_prompt(i), {"role": "assistant", "content": SOLUTION}]}
        for i in range(count)
    ]


def _dpo_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "prompt": _prompt(i),
            "chosen": [{"role": "assistant", "content": SOLUTION}],
            "rejected": [{"role": "assistant", "content": "The answer is \\boxed{3}."}],
        }
        for i in range(count)
    ]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


@pytest.fixture()
def fake_base(tmp_path: Path) -> Path:
    """Enough of a model folder for the checks that run before anything is loaded."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    return base


# Refused inputs: no torch needed ------------------------------------------------------

USER = {"role": "user", "content": "q"}
ANSWER = {"role": "assistant", "content": "a"}


@pytest.mark.parametrize(
    "method, lines, message",
    [
        ("sft", [], "has no records"),
        ("sft", ["{not json"], ":1: not JSON"),
        ("sft", [{"messages": [USER, ANSWER]}, "[1]"], ":2: not a JSON object"),
        ("sft", [{"text": "a"}], "'messages' must be a non-empty list"),
        ("sft", [{"messages": [USER, {"role": "bot", "content": "a"}]}], "not {role, content}"),
        ("sft", [{"messages": [USER, USER]}], "one non-empty assistant message"),
        ("sft", [{"messages": [ANSWER]}], "must hold a user message"),
        ("sft", [{"messages": [USER, {"role": "assistant", "content": ""}]}], "non-empty"),
        ("dpo", [{"messages": [USER, ANSWER]}], "'prompt' must be a non-empty list"),
        ("dpo", [{"prompt": [USER], "chosen": [ANSWER]}], "'rejected' must be"),
        ("dpo", [{"prompt": [USER], "chosen": [USER], "rejected": [ANSWER]}], "'chosen' must"),
        (
            "dpo",
            [{"prompt": [USER, ANSWER], "chosen": [ANSWER], "rejected": [ANSWER]}],
            "end before the answer",
        ),
    ],
)
def test_malformed_data_is_refused_with_the_line(
    tmp_path, fake_base, capsys, method, lines, message
) -> None:
    data = _write(tmp_path / "data.jsonl", lines)
    out = tmp_path / "policy"
    argv = ["train-policy", str(data), "--method", method, "--out", str(out)]
    assert learn_main([*argv, "--base", str(fake_base)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("ponder learn train-policy:")
    if "{" in message or "'" in message:  # a record of the wrong shape: say the right one
        assert f"--method {method} expects" in error
    assert not out.exists()


def test_missing_inputs_and_existing_output_are_refused(tmp_path, fake_base, capsys) -> None:
    data = _write(tmp_path / "sft.jsonl", _sft_rows(2))
    out = tmp_path / "policy"

    def refused(*argv: str) -> str:
        assert learn_main(["train-policy", *argv]) == 2
        return capsys.readouterr().err

    assert "not found" in refused(
        str(tmp_path / "nope.jsonl"), "--out", str(out), "--base", str(fake_base)
    )
    assert "base model" in refused(str(data), "--out", str(out), "--base", str(tmp_path / "none"))
    assert "--beta must be positive" in refused(
        str(data), "--out", str(out), "--base", str(fake_base), "--beta", "0"
    )
    out.mkdir()
    assert "pass --overwrite" in refused(str(data), "--out", str(out), "--base", str(fake_base))
    # A DPO file read as SFT is named for what it lacks.
    dpo = _write(tmp_path / "dpo.jsonl", _dpo_rows(2))
    assert "'messages' must be" in refused(
        str(dpo), "--out", str(tmp_path / "p2"), "--base", str(fake_base)
    )
    with pytest.raises(SystemExit):
        learn_main(["train-policy", str(data), "--out", str(out), "--method", "ppo"])


def test_records_become_trl_prompt_completion_rows(tmp_path) -> None:
    sft = load_policy_data(_write(tmp_path / "sft.jsonl", _sft_rows(1)), "sft")[0]
    assert sft.as_row() == {
        "prompt": _prompt(0),
        "completion": [{"role": "assistant", "content": SOLUTION}],
    }
    assert sft.question == "Question 0: how many apples are there?"
    dpo = load_policy_data(_write(tmp_path / "dpo.jsonl", _dpo_rows(1)), "dpo")[0]
    assert set(dpo.as_row()) == {"prompt", "chosen", "rejected"}


# Training on the tiny model (torch + TRL; engine-marked through `tiny_prms`) ----------

#: float32: the thresholds below must hold on every CPU, bf16 autocast ones included.
TOY_FLAGS = [
    *("--max-steps", "25", "--lr", "3e-3", "--batch-size", "4", "--val-fraction", "0.25"),
    *("--dtype", "float32"),
]


@pytest.fixture(scope="module")
def sft_trained(tiny_prms: dict[str, Path], tmp_path_factory) -> dict[str, Any]:
    """The tiny Llama fine-tuned through the CLI on the toy SFT set."""
    root = tmp_path_factory.mktemp("train-policy")
    data = _write(root / "sft.jsonl", _sft_rows(16))
    out = root / "models" / "toy-policy"
    argv = ["train-policy", str(data), "--out", str(out), "--base", str(tiny_prms["token"])]
    assert learn_main([*argv, *TOY_FLAGS]) == 0
    return {
        "out": out,
        "base": tiny_prms["token"],
        "card": json.loads((out / CARD_JSON).read_text()),
    }


def test_sft_learns_the_toy_solution_and_writes_its_card(sft_trained) -> None:
    out, card = sft_trained["out"], sft_trained["card"]
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    assert not (out / "trainer").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy-policy"]  # no staging left
    assert card["method"] == "sft" and card["training"]["steps"] == 25
    assert card["train"]["questions"] == 12 and card["validation"]["questions"] == 4
    assert card["training"]["tokens"] > 0 and card["training"]["tokens_per_s"] > 0
    before, after = card["validation_before"], card["validation_after"]
    assert after["loss"] < 0.5 * before["loss"]
    assert after["mean_token_accuracy"] > before["mean_token_accuracy"]
    assert "ponder serve --policy" in (out / CARD_MD).read_text()


def test_dpo_trains_towards_the_chosen_answer(tiny_prms, tmp_path) -> None:
    data = _write(tmp_path / "dpo.jsonl", _dpo_rows(12))
    card = train_policy(
        PolicyOptions(
            data=data,
            out=tmp_path / "dpo-policy",
            base=tiny_prms["token"],
            method="dpo",
            max_steps=8,
            lr=3e-3,
            val_fraction=0.25,
            dtype="float32",
        )
    )
    before, after = card["validation_before"], card["validation_after"]
    assert card["hyperparameters"]["beta"] == 0.1
    assert after["loss"] < before["loss"] and after["rewards/margins"] > 0
    assert after["rewards/accuracies"] == 1.0


def test_an_interrupted_training_leaves_no_model_folder(tiny_prms, tmp_path) -> None:
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                raise KeyboardInterrupt("simulated ^C")

    data = _write(tmp_path / "sft.jsonl", _sft_rows(4))
    out = tmp_path / "policy"
    options = PolicyOptions(
        data=data, out=out, base=tiny_prms["token"], max_steps=3, callbacks=[Interrupt()]
    )
    with pytest.raises(KeyboardInterrupt):
        train_policy(options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft.jsonl"]


def _greedy_answer(server_url: str) -> dict[str, Any]:
    body = {
        "question": HELD_OUT_QUESTION,
        "strategy": "best_of_n",
        "n": 1,
        "temperature": 0.0,
        "max_new_tokens": 16,
        "seed": 0,
    }
    response = httpx.post(server_url + "/v1/solve", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _greedy_with_transformers(folder: Path) -> str:
    """The folder's greedy solution to the held-out question (its chat template, the
    toy set's system prompt)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [SYSTEM, {"role": "user", "content": HELD_OUT_QUESTION}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=16, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def test_the_trained_policy_is_served_by_ponder(sft_trained, tmp_path) -> None:
    """`ponder serve --policy DIR` (real vLLM) on the trained folder answers 7 to a
    question it never saw; the untrained base, greedy in transformers, does not."""
    from tests.servers import start_server  # here: a module-level import marks every test engine

    assert extract_answer(_greedy_with_transformers(sft_trained["base"])) != "7"
    server = start_server(
        ponder_command(
            "--policy",
            str(sft_trained["out"]),
            "--served-model-name",
            "toy",
            "--block-size",
            "32",
            "--reward",
            "none",
            "--dtype",
            "float32",
            *ENGINE_FLAGS,
            "--gpu-memory-utilization",
            "0.05",
        ),
        tmp_path / "server.log",
        "/health",
    )
    try:
        body = _greedy_answer(server.url)
    finally:
        server.stop()
    assert body["answer"] == "7", body["candidates"]
    assert body["model"] == "toy"

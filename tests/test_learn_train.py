"""`ponder learn train-prm`: a stepwise-supervision file into a Math-Shepherd-style PRM.

Refused inputs are checked without torch (fast tests). Training runs a few steps on
the tiny random-weight token PRM of `server/testing/tiny_models.py` (engine-marked
through the `tiny_prms` fixture): on a toy set where a step saying "good" is right and one
saying "bad" is wrong, the trained model must tell them apart on held-out questions,
read exactly as the served client reads it; and the trained folder must load in real
vLLM through Ponder's own `TokenLogitPRM` and score the same there.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from learning.cli import main as learn_main
from learning.train_prm import (
    CARD_JSON,
    CARD_MD,
    TrainOptions,
    auroc,
    default_base_model,
    load_step_data,
    split_by_prompt,
    train_prm,
)
from reward_clients.prm_formats import math_shepherd_text

#: Held-out questions (the toy training set's are "Question i: ...").
HELD_OUT = "Check these new items, please."
HELD_OUT_STEPS = [
    "We look at item 123 and it is good.",
    "We look at item 7 and it is bad.",
    "We look at item 55 and it is good.",
    "We look at item 8 and it is bad.",
]


def _toy_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        labels = [rng.random() < 0.5 for _ in range(rng.randint(1, 4))]
        steps = [
            f"We look at item {rng.randint(1, 99)} and it is {'good' if ok else 'bad'}."
            for ok in labels
        ]
        rows.append(
            {"prompt": f"Question {i}: check the items.", "completions": steps, "labels": labels}
        )
    return rows


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


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# Refused inputs: no torch needed ------------------------------------------------------

GOOD_ROW = {"prompt": "q", "completions": ["a"], "labels": [True]}


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "has no records"),
        (["", "  "], "has no records"),
        (["{not json"], ":1: not JSON"),
        ([GOOD_ROW, "[1, 2]"], ":2: not a JSON object"),
        ([{"prompt": "", "completions": ["a"], "labels": [True]}], "'prompt' must be"),
        ([{"prompt": "q", "completions": [], "labels": []}], "'completions' must be"),
        ([{"prompt": "q", "completions": ["a", 3], "labels": [True, True]}], "'completions' must"),
        ([{"prompt": "q", "completions": ["a"], "labels": ["yes"]}], "'labels' must be"),
        (
            [{"prompt": "q", "completions": ["a", "b"], "labels": [True]}],
            "2 completions but 1 labels",
        ),
        ([{"prompt": "q", "completions": ["a ки"], "labels": [True]}], "contains the step tag"),
    ],
)
def test_malformed_data_is_refused_with_the_line(
    tmp_path, fake_base, capsys, lines, message
) -> None:
    data = _write(tmp_path / "data.jsonl", lines)
    out = tmp_path / "prm"
    code = learn_main(["train-prm", str(data), "--out", str(out), "--base", str(fake_base)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and str(data) in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_missing_inputs_and_existing_output_are_refused(tmp_path, fake_base, capsys) -> None:
    data = _write(tmp_path / "data.jsonl", [GOOD_ROW])
    out = tmp_path / "prm"
    cases = [
        ([str(tmp_path / "nope.jsonl"), "--base", str(fake_base)], "nope.jsonl not found"),
        ([str(data), "--base", str(tmp_path / "no-model")], "no-model not found"),
        ([str(data), "--base", str(fake_base), "--batch-size", "0"], "--batch-size must be"),
    ]
    for argv, message in cases:
        assert learn_main(["train-prm", *argv, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("old model")
    assert learn_main(["train-prm", str(data), "--out", str(out), "--base", str(fake_base)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (
        learn_main(
            [
                "train-prm",
                str(data),
                "--out",
                str(fake_base),
                "--base",
                str(fake_base),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "must not be the --base" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "old model"


def test_default_base_is_where_prepare_model_puts_it(monkeypatch, tmp_path) -> None:
    """learning/ never imports server/, so it recomputes the folder; the rules must agree."""
    from server.model_prep import default_cache_dir, embedded_model_dir

    for cache in (None, str(tmp_path)):
        if cache is None:
            monkeypatch.delenv("PONDER_CACHE", raising=False)
        else:
            monkeypatch.setenv("PONDER_CACHE", cache)
        assert default_base_model() == embedded_model_dir(default_cache_dir())


def test_steps_containing_the_tag_are_left_out_with_a_note(tmp_path) -> None:
    data = load_step_data(
        _write(
            tmp_path / "d.jsonl",
            [GOOD_ROW, {"prompt": "q ки", "completions": ["a"], "labels": [False]}],
        )
    )
    assert len(data.examples) == 1 and "left out 1 records" in data.notes[0]


def test_validation_holds_out_whole_questions() -> None:
    examples = load_step_data_from(
        _toy_rows(20)
        + [{"prompt": "Question 3: check the items.", "completions": ["x"], "labels": [True]}]
    )
    train, val = split_by_prompt(examples, 0.25, seed=1)
    assert {e.prompt for e in train}.isdisjoint({e.prompt for e in val})
    assert len({e.prompt for e in val}) == 5 and len(train) + len(val) == 21
    assert split_by_prompt(examples, 0.0, 1)[1] == []
    one = [e for e in examples if e.prompt == examples[0].prompt]
    assert split_by_prompt(one, 0.5, 1) == (one, [])  # never hold out every question


def load_step_data_from(rows: list[dict[str, Any]]):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_step_data(_write(Path(folder) / "d.jsonl", rows)).examples


def test_auroc() -> None:
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    assert auroc([0.3, 0.6, 0.6, 0.9], [False, True, False, True]) == 0.875
    assert auroc([0.3, 0.4], [True, True]) is None


# Training on the tiny model (torch; engine-marked through `tiny_prms`) ----------------

TOY_FLAGS = ["--max-steps", "30", "--lr", "1e-3", "--batch-size", "4", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def toy_trained(tiny_prms: dict[str, Path], tmp_path_factory) -> dict[str, Any]:
    """The tiny token PRM trained through the CLI for a few steps on the toy set."""
    root = tmp_path_factory.mktemp("train-prm")
    data = _write(root / "toy.jsonl", _toy_rows(40))
    out = root / "models" / "toy-prm"
    assert (
        learn_main(
            [
                "train-prm",
                str(data),
                "--out",
                str(out),
                "--base",
                str(tiny_prms["token"]),
                *TOY_FLAGS,
            ]
        )
        == 0
    )
    return {"out": out, "data": data, "card": json.loads((out / CARD_JSON).read_text())}


def _p_good_with_transformers(model_dir: Path, question: str, steps: list[str]) -> list[float]:
    """P(+)/(P(+)+P(-)) at each tag, read as `TokenLogitPRM` reads it (same text, same
    encoding, label ids from encode(x)[-1])."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tokenizer.encode(math_shepherd_text(question, steps), add_special_tokens=True)
    tag = tokenizer.encode("ки", add_special_tokens=False)
    assert len(tag) == 1
    plus, minus = (tokenizer.encode(s, add_special_tokens=False)[-1] for s in "+-")
    positions = [i for i, t in enumerate(ids) if t == tag[0]]
    assert len(positions) == len(steps)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return logits[positions][:, [plus, minus]].softmax(-1)[:, 0].tolist()


def test_trained_folder_loads_and_has_its_card(toy_trained) -> None:
    from transformers import AutoConfig

    out, card = toy_trained["out"], toy_trained["card"]
    assert (out / "model.safetensors").is_file() and (out / CARD_MD).is_file()
    assert AutoConfig.from_pretrained(out).architectures == ["LlamaForCausalLM"]
    assert _leftovers(out.parent) == []  # no staging folder left beside it
    assert card["data"]["records"] == 40 and card["data"]["file"] == str(toy_trained["data"])
    assert card["data"]["good_steps"] + card["data"]["bad_steps"] == card["data"]["steps"]
    assert card["validation"]["records"] == 10 and card["train"]["records"] == 30
    assert card["hyperparameters"]["max_steps"] == 30 and card["training"]["steps"] == 30
    assert card["training"]["tokens_per_s"] > 0
    assert "--prm-kind math-shepherd" in (out / CARD_MD).read_text()


def test_training_learns_the_toy_rule(toy_trained) -> None:
    card = toy_trained["card"]
    before, after = card["validation_before"], card["validation_after"]
    assert after["loss"] < before["loss"]
    assert after["auroc"] > 0.9 and after["accuracy"] > before["accuracy"]
    assert card["training"]["last_logged_loss"] < card["training"]["first_logged_loss"]
    # Read back from the saved folder, on a question and items never trained on.
    good_1, bad_1, good_2, bad_2 = _p_good_with_transformers(
        toy_trained["out"], HELD_OUT, HELD_OUT_STEPS
    )
    assert min(good_1, good_2) > 0.5 > max(bad_1, bad_2)


def test_a_base_without_the_tag_gets_it(tiny_prms, embedded_model, tmp_path) -> None:
    """A base whose tokenizer splits `ки` (SmolLM2's own) gets it added and the
    embeddings resized, so the served client finds one tag per step."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    base = tmp_path / "plain"
    base.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_model / name, base / name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(base)),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(base)
    data = _write(tmp_path / "toy.jsonl", _toy_rows(6))
    card = train_prm(
        TrainOptions(data=data, out=tmp_path / "prm", base=base, max_steps=1, val_fraction=0)
    )
    assert card["tokens"]["step_tag_added"] and card["validation_after"]["steps"] == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "prm")
    assert tokenizer.encode("ки", add_special_tokens=False) == [card["tokens"]["step_tag_id"]]
    saved = json.loads((tmp_path / "prm" / "config.json").read_text())
    assert saved["vocab_size"] >= len(tokenizer) and saved["vocab_size"] % 64 == 0
    assert _p_good_with_transformers(tmp_path / "prm", "q", ["a", "b"])  # one tag per step


def test_an_interrupted_training_leaves_no_model_folder(tiny_prms, tmp_path) -> None:
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated ^C")

    data = _write(tmp_path / "toy.jsonl", _toy_rows(12))
    out = tmp_path / "prm"
    options = TrainOptions(
        data=data, out=out, base=tiny_prms["token"], max_steps=5, callbacks=[Interrupt()]
    )
    with pytest.raises(KeyboardInterrupt):
        train_prm(options)
    assert not out.exists() and _leftovers(tmp_path) == []
    # With --overwrite, the old model stays whole until a new one is complete.
    out.mkdir()
    (out / "config.json").write_text('{"old": true}')
    options.overwrite = True
    with pytest.raises(KeyboardInterrupt):
        train_prm(options)
    assert json.loads((out / "config.json").read_text()) == {"old": True}
    assert _leftovers(tmp_path) == []


# The trained PRM in real vLLM -------------------------------------------------------


def test_trained_prm_scores_in_real_vllm(toy_trained) -> None:
    """Needs vLLM: the trained folder served in-process (`LocalPRMBackend`) and read by
    Ponder's own math-shepherd client scores as transformers does, right above wrong."""
    from reward_clients.learned_prm import TokenLogitPRM
    from server.policy.vllm_engine import EngineOptions
    from server.prm.vllm_local import LocalPRMBackend

    out = toy_trained["out"]
    solutions = [HELD_OUT_STEPS, HELD_OUT_STEPS[1:2], []]

    async def score() -> list[list[float]]:
        options = EngineOptions(
            model=str(out),
            served_model_name="prm",
            max_model_len=1024,
            gpu_memory_utilization=0.1,
            enforce_eager=True,
            dtype="float32",
        )
        backend = LocalPRMBackend.start(options, pooling=False)
        try:
            return await TokenLogitPRM(backend, "math-shepherd").score(HELD_OUT, solutions)
        finally:
            await backend.close()

    scores = asyncio.run(score())
    assert [len(s) for s in scores] == [4, 1, 0]
    assert all(0.0 <= x <= 1.0 for row in scores for x in row)
    good_1, bad_1, good_2, bad_2 = scores[0]
    assert min(good_1, good_2) > 0.5 > max(bad_1, bad_2)
    expected = _p_good_with_transformers(out, HELD_OUT, HELD_OUT_STEPS)
    assert scores[0] == pytest.approx(expected, abs=1e-3)

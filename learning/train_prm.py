"""`ponder learn train-prm`: a stepwise-supervision file into a Math-Shepherd-style PRM.

The model learns the format Ponder already serves (`--prm DIR --prm-kind
math-shepherd`, `reward_clients.learned_prm.TokenLogitPRM`), so serving needs no new
inference code: each record is rendered with `reward_clients.prm_formats.
math_shepherd_text` (`question Step 1: ... ки\\nStep 2: ... ки`) and encoded as the
client encodes it (special tokens on); at every `ки` the causal LM's logits of the two
label tokens `+`/`-` are trained with a two-way cross-entropy towards `+` for a right
step and `-` for a wrong one. That is exactly the quantity the client reads,
P(+) / (P(+) + P(-)); Math-Shepherd itself trained full-vocabulary CE on the label
token, which moves the same two logits plus the rest of the vocabulary.

Why not TRL's `PRMTrainer`: it trains a token-classification head
(`AutoModelForTokenClassification`), an architecture Ponder does not serve; so this is
transformers' `Trainer` with a `compute_loss` of our own (no hand-written loop).

The default base is the embedded model where `ponder prepare-model` puts it
(`learning.training`). Everything that can be refused (output folder, base folder,
data file) is checked before torch is imported. The model is written to a hidden
sibling folder and renamed into place at the end, so an interrupted run leaves no
folder `--prm` would load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learning.training import (
    CARD_JSON,
    CARD_MD,
    TrainOptions,
    check_paths,
    default_base_model,
    metric,
    split_by_group,
    train_into_folder,
)
from reward_clients.prm_formats import (
    BAD_LABEL,
    GOOD_LABEL,
    SHEPHERD_STEP_TAG,
)

__all__ = [
    "CARD_JSON",
    "CARD_MD",
    "TrainOptions",
    "default_base_model",
    "load_step_data",
    "split_by_prompt",
    "train_prm",
]

#: Two-way classes at each step tag: index 0 is `+` (right step), 1 is `-`.
GOOD, BAD = 0, 1


@dataclass(frozen=True)
class StepExample:
    prompt: str
    steps: tuple[str, ...]
    labels: tuple[bool, ...]


@dataclass(frozen=True)
class StepData:
    examples: list[StepExample]
    notes: list[str]


def _refuse(path: Path, line: int, why: str) -> ValueError:
    return ValueError(
        f"{path}:{line}: {why} (expected a stepwise-supervision record "
        '{"prompt": str, "completions": [str, ...], "labels": [bool, ...]}, '
        "as `ponder learn export --format prm` writes)"
    )


def load_step_data(path: Path) -> StepData:
    """Read and check a stepwise-supervision JSONL file (TRL's standard format)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"data file {path} not found"
            if not path.exists()
            else f"data file {path} is not a file"
        )
    examples: list[StepExample] = []
    with_tag = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise _refuse(path, number, f"not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise _refuse(path, number, "not a JSON object")
            prompt, steps, labels = row.get("prompt"), row.get("completions"), row.get("labels")
            if not isinstance(prompt, str) or not prompt.strip():
                raise _refuse(path, number, "'prompt' must be a non-empty string")
            if (
                not isinstance(steps, list)
                or not steps
                or not all(isinstance(s, str) for s in steps)
            ):
                raise _refuse(path, number, "'completions' must be a non-empty list of strings")
            if not isinstance(labels, list) or not all(isinstance(x, bool) for x in labels):
                raise _refuse(path, number, "'labels' must be a list of true/false")
            if len(labels) != len(steps):
                raise _refuse(path, number, f"{len(steps)} completions but {len(labels)} labels")
            if any(SHEPHERD_STEP_TAG in text for text in (prompt, *steps)):
                with_tag += 1  # the served client refuses these too: the tags would misalign
                continue
            examples.append(StepExample(prompt, tuple(steps), tuple(labels)))
    notes = (
        [(f"left out {with_tag} records whose text contains the step tag {SHEPHERD_STEP_TAG!r}")]
        if with_tag
        else []
    )
    if not examples:
        raise ValueError(
            f"data file {path} has no records to train on" + (f" ({notes[0]})" if notes else "")
        )
    return StepData(examples, notes)


def split_by_prompt(
    examples: Sequence[StepExample], fraction: float, seed: int
) -> tuple[list[StepExample], list[StepExample]]:
    """(train, validation): whole prompts held out, so validation questions are unseen."""
    return split_by_group(examples, lambda e: e.prompt, fraction, seed)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` for the positive labels (ties count half);
    None when one class is missing."""
    ranked = sorted(zip(scores, labels))
    positives = sum(1 for _, good in ranked if good)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return None
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(1 for _, good in ranked[i:j] if good) * (i + j + 1) / 2
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def label_balance(examples: Sequence[StepExample]) -> dict[str, int]:
    steps = [x for e in examples for x in e.labels]
    return {
        "records": len(examples),
        "steps": len(steps),
        "good_steps": sum(steps),
        "bad_steps": len(steps) - sum(steps),
    }


def train_prm(options: TrainOptions) -> dict[str, Any]:
    """Train and save the PRM into `options.out`; return the card (also saved there)."""
    check_paths(options)
    data = load_step_data(options.data)
    try:
        from learning import prm_trainer  # torch and transformers from here on
    except ImportError as error:
        raise ImportError(
            f"train-prm needs torch, transformers and accelerate ({error}); "
            "install the cpu or gpu extra (`make install`)"
        ) from error

    return train_into_folder(
        options.out, lambda staging: prm_trainer.fit(options, data, staging), card_markdown
    )


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people; `card.json` holds the same facts for programs."""
    data, before, after = card["data"], card["validation_before"], card["validation_after"]
    lines = [
        "# Process reward model (Math-Shepherd format), trained by `ponder learn train-prm`",
        "",
        f"Serve it: `ponder serve --prm {card['output']} --prm-kind math-shepherd`",
        "",
        f"- Base model: `{card['base_model']}`",
        (
            f"- Data: `{data['file']}`: {data['records']} records, {data['steps']} steps "
            f"({data['good_steps']} labelled `+`, {data['bad_steps']} `-`); "
            f"train {card['train']['records']} records, validation "
            f"{card['validation']['records']} records ({card['validation']['steps']} steps, "
            "questions not in training)"
        ),
        (
            f"- Format: `question Step 1: ... {SHEPHERD_STEP_TAG}\\nStep 2: ... "
            f"{SHEPHERD_STEP_TAG}`; at each tag, two-way cross-entropy on the logits of "
            f"`{GOOD_LABEL}` (right step) and `{BAD_LABEL}` (wrong step)"
        ),
        f"- Hyper-parameters: {json.dumps(card['hyperparameters'])}",
        (
            f"- Training: {card['training']['steps']} optimizer steps, train loss "
            f"{metric(card['training']['train_loss'])} (last logged "
            f"{metric(card['training']['last_logged_loss'])}), "
            f"{card['training']['tokens_per_s']} tokens/s, {card.get('wall_s')} s in all"
        ),
        "",
        "| validation (step level) | before | after |",
        "| --- | --- | --- |",
    ]
    for key in ("loss", "accuracy", "auroc"):
        lines.append(f"| {key} | {metric(before.get(key))} | {metric(after.get(key))} |")
    lines += [
        "",
        (
            "Accuracy: P(+) > 0.5 agrees with the label. AUROC: of P(+) for right "
            "steps against wrong ones."
        ),
        "",
    ]
    lines += [f"Note: {note}" for note in card.get("notes", [])]
    return "\n".join(lines) + "\n"

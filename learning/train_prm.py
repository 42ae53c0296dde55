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

The default base is the embedded model where `ponder prepare-model` puts it. learning/
never imports server/, so the folder is computed here by the same rule as
`server/model_prep.py` (`$PONDER_CACHE` or `~/.cache/ponder`, then
`models/smollm2-135m-instruct`); a test keeps the two equal.

Everything that can be refused (output folder, base folder, data file) is checked
before torch is imported. The model is written to a hidden sibling folder and renamed
into place at the end, so an interrupted run leaves no folder `--prm` would load.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward_clients.prm_formats import (
    BAD_LABEL,
    GOOD_LABEL,
    SHEPHERD_STEP_TAG,
)

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
#: `server/model_prep.py` writes this file last; without it the folder is half made.
PREPARED_MARKER = ".ponder-prepared"
CARD_JSON, CARD_MD = "card.json", "MODEL_CARD.md"
#: Two-way classes at each step tag: index 0 is `+` (right step), 1 is `-`.
GOOD, BAD = 0, 1


def default_base_model() -> Path:
    """The embedded model's folder, as `server.model_prep.embedded_model_dir` makes it."""
    cache = Path(os.environ.get("PONDER_CACHE", Path.home() / ".cache" / "ponder"))
    return cache / "models" / EMBEDDED_MODEL_NAME


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
    """(train, validation): whole prompts held out, so validation questions are unseen.

    At least one prompt is held out when `fraction` > 0 and there are two or more;
    never all of them.
    """
    prompts = sorted({e.prompt for e in examples})
    random.Random(seed).shuffle(prompts)
    count = min(len(prompts) - 1, math.ceil(fraction * len(prompts))) if fraction > 0 else 0
    held = set(prompts[: max(0, count)])
    return (
        [e for e in examples if e.prompt not in held],
        [e for e in examples if e.prompt in held],
    )


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


@dataclass
class TrainOptions:
    data: Path
    out: Path
    base: Path = field(default_factory=default_base_model)
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 2e-5
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    val_fraction: float = 0.1
    seed: int = 0
    dtype: str = "auto"  # training precision: auto | float32 | bfloat16 (autocast)
    overwrite: bool = False
    #: Extra `transformers.TrainerCallback`s (tests use one to interrupt a run).
    callbacks: list[Any] = field(default_factory=list)


def check_paths(options: TrainOptions) -> None:
    """Refuse an existing output and a missing base before anything is loaded."""
    out, base = options.out, options.base
    if out.exists() and not options.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; --out names a model folder")
    if not (base / "config.json").is_file():
        hint = (
            " (the embedded model: run `ponder prepare-model` first)"
            if base == default_base_model()
            else ""
        )
        raise FileNotFoundError(f"base model {base} not found: no config.json there{hint}")
    if base == default_base_model() and not (base / PREPARED_MARKER).is_file():
        raise FileNotFoundError(f"base model {base} is half prepared; rerun `ponder prepare-model`")
    if out.resolve() == base.resolve():
        raise ValueError("--out must not be the --base folder")
    for name, value, low in (
        ("--batch-size", options.batch_size, 1),
        ("--max-length", options.max_length, 16),
    ):
        if value < low:
            raise ValueError(f"{name} must be at least {low}")
    if options.max_steps is not None and options.max_steps < 1:
        raise ValueError("--max-steps must be at least 1")
    if options.epochs <= 0 or options.lr <= 0 or not 0 <= options.val_fraction < 1:
        raise ValueError("--epochs and --lr must be positive and --val-fraction in [0, 1)")
    if options.dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"--dtype: unknown {options.dtype!r}; auto, float32 or bfloat16")


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

    started = time.monotonic()
    staging = options.out.parent / f".{options.out.name}.partial-{os.getpid()}"
    options.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        card = prm_trainer.fit(options, data, staging)
        card["wall_s"] = round(time.monotonic() - started, 1)
        write_card(staging, card)
        _swap_into_place(staging, options.out)
    except BaseException:  # KeyboardInterrupt included: never leave a loadable half model
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return card


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename `staging` to `out`; an old `out` (--overwrite) goes only once the new is in."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / CARD_MD).write_text(card_markdown(card), encoding="utf-8")


def _metric(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


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
            f"{_metric(card['training']['train_loss'])} (last logged "
            f"{_metric(card['training']['last_logged_loss'])}), "
            f"{card['training']['tokens_per_s']} tokens/s, {card.get('wall_s')} s in all"
        ),
        "",
        "| validation (step level) | before | after |",
        "| --- | --- | --- |",
    ]
    for key in ("loss", "accuracy", "auroc"):
        lines.append(f"| {key} | {_metric(before.get(key))} | {_metric(after.get(key))} |")
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


def options_summary(options: TrainOptions) -> dict[str, Any]:
    keep = (
        "epochs",
        "max_steps",
        "lr",
        "batch_size",
        "grad_accum",
        "max_length",
        "val_fraction",
        "seed",
        "dtype",
    )
    return {k: getattr(options, k) for k in keep}

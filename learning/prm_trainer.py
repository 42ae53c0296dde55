"""The torch half of `ponder learn train-prm`: tokens, the step-label loss, the
`Trainer`, validation metrics and the saved folder.

Imported by `learning.train_prm` only once the inputs have been checked, so that
`ponder learn` and the fast tests never load torch for a refused command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)

from learning.torch_training import bf16_training, dtype_of, save_model, training_summary
from learning.train_prm import (
    BAD,
    GOOD,
    StepData,
    StepExample,
    TrainOptions,
    auroc,
    label_balance,
    split_by_prompt,
)
from learning.training import options_summary
from reward_clients.prm_formats import (
    BAD_LABEL,
    GOOD_LABEL,
    SHEPHERD_STEP_TAG,
    math_shepherd_text,
    positions_of,
)

Encoded = dict[str, list[int]]


@dataclass(frozen=True)
class PRMTokens:
    """The ids `TokenLogitPRM` will look up: encode(text)[-1] of the tag and labels."""

    tag: int
    good: int
    bad: int
    tag_added: bool


def _tag_in_context(tokenizer: Any) -> int | None:
    """The tag's id if it is one token alone and stays one token inside a rendering."""
    ids = tokenizer.encode(SHEPHERD_STEP_TAG, add_special_tokens=False)
    if len(ids) != 1:
        return None
    probe = tokenizer.encode(
        math_shepherd_text("1 + 1?", ["1 + 1 = 2.", "So 2."]), add_special_tokens=True
    )
    return ids[0] if len(positions_of(probe, ids[0])) == 2 else None


def prepare_tokens(tokenizer: Any) -> PRMTokens:
    """Make `ки` one token (added when the base splits it, as
    `server/testing/tiny_models.build_tiny_token_prm` does) and find the label ids the
    way the served client does."""
    from tokenizers import AddedToken

    tag, added = _tag_in_context(tokenizer), False
    if tag is None:
        tokenizer.add_tokens([AddedToken(SHEPHERD_STEP_TAG, special=False, normalized=False)])
        tag, added = _tag_in_context(tokenizer), True
    if tag is None:
        raise ValueError(
            f"the base tokenizer does not keep {SHEPHERD_STEP_TAG!r} as one token even when added"
        )
    good = tokenizer.encode(GOOD_LABEL, add_special_tokens=False)[-1]
    bad = tokenizer.encode(BAD_LABEL, add_special_tokens=False)[-1]
    if len({tag, good, bad}) != 3:
        raise ValueError(
            f"the base tokenizer maps the step tag and the labels {GOOD_LABEL!r}/"
            f"{BAD_LABEL!r} onto the same token ({tag}, {good}, {bad})"
        )
    return PRMTokens(tag, good, bad, added)


def encode_example(
    tokenizer: Any, tokens: PRMTokens, example: StepExample, max_length: int
) -> Encoded | None:
    """Token ids as the client encodes them, the tag positions and their targets.

    Steps whose tag falls beyond `max_length` are cut off; None if none is left.
    """
    ids = tokenizer.encode(
        math_shepherd_text(example.prompt, example.steps), add_special_tokens=True
    )
    positions = positions_of(ids, tokens.tag)
    if len(positions) != len(example.steps):
        raise ValueError(
            f"{len(example.steps)} steps rendered to {len(positions)} step tags "
            f"(prompt {example.prompt[:60]!r}); the tokenizer merges the tag"
        )
    kept = [
        (p, GOOD if label else BAD) for p, label in zip(positions, example.labels) if p < max_length
    ]
    if not kept:
        return None
    return {
        "input_ids": ids[:max_length],
        "positions": [p for p, _ in kept],
        "targets": [t for _, t in kept],
        "cut": [len(positions) - len(kept)],
    }


def encode_all(
    tokenizer: Any, tokens: PRMTokens, examples: Sequence[StepExample], max_length: int
) -> tuple[list[Encoded], int]:
    """(encoded examples, number of step labels cut off by `max_length`)."""
    encoded, cut = [], 0
    for example in examples:
        item = encode_example(tokenizer, tokens, example, max_length)
        cut += len(example.steps) if item is None else item["cut"][0]
        if item is not None:
            encoded.append(item)
    return encoded, cut


class StepCollator:
    """Right-pads a batch; tag positions padded with -1, targets with -100."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        tags = max(len(f["positions"]) for f in features)
        batch = {
            "input_ids": torch.full((len(features), width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
            "tag_positions": torch.full((len(features), tags), -1, dtype=torch.long),
            "step_targets": torch.full((len(features), tags), -100, dtype=torch.long),
        }
        for row, f in enumerate(features):
            n, k = len(f["input_ids"]), len(f["positions"])
            batch["input_ids"][row, :n] = torch.tensor(f["input_ids"])
            batch["attention_mask"][row, :n] = 1
            batch["tag_positions"][row, :k] = torch.tensor(f["positions"])
            batch["step_targets"][row, :k] = torch.tensor(f["targets"])
        return batch


def label_logits(
    model: Any, batch: dict[str, torch.Tensor], label_ids: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """([steps, 2] logits of (`+`, `-`) at every tag, [steps] targets).

    The LM head runs only at the batch's tag positions (`logits_to_keep`), not over
    the whole sequence: the vocabulary projection is a large share of a small model.
    """
    positions = batch["tag_positions"]
    present = positions >= 0
    keep = torch.unique(positions[present])  # sorted
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=keep,
        use_cache=False,
    )
    columns = torch.searchsorted(keep, positions.clamp(min=0))
    rows = torch.arange(positions.shape[0], device=positions.device)[:, None].expand_as(positions)
    picked = out.logits[rows[present], columns[present]]
    return picked[:, list(label_ids)].float(), batch["step_targets"][present]


class StepLabelTrainer(Trainer):
    """`Trainer` with the step-label loss; counts the tokens it trained on."""

    #: The loss is a mean over this batch's tags; let Trainer divide by accumulation.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, label_ids: Sequence[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label_ids = list(label_ids)
        self.tokens_trained = 0

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        logits, targets = label_logits(model, inputs, self.label_ids)
        loss = F.cross_entropy(logits, targets)
        if model.training:
            self.tokens_trained += int(inputs["attention_mask"].sum())
        return (loss, {"logits": logits}) if return_outputs else loss


@torch.no_grad()
def evaluate(
    model: Any,
    encoded: Sequence[Encoded],
    collator: StepCollator,
    label_ids: Sequence[int],
    batch_size: int,
) -> dict[str, Any]:
    """Step-level loss, accuracy (P(+) > 0.5 agrees with the label) and AUROC of P(+)."""
    if not encoded:
        return {"steps": 0, "loss": None, "accuracy": None, "auroc": None}
    was_training = model.training
    model.eval()
    probabilities: list[float] = []
    goods: list[bool] = []
    loss_sum = 0.0
    for start in range(0, len(encoded), batch_size):
        batch = {
            k: v.to(model.device) for k, v in collator(encoded[start : start + batch_size]).items()
        }
        logits, targets = label_logits(model, batch, label_ids)
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        probabilities += logits.softmax(-1)[:, GOOD].tolist()
        goods += (targets == GOOD).tolist()
    model.train(was_training)
    right = sum((p > 0.5) == g for p, g in zip(probabilities, goods))
    return {
        "steps": len(goods),
        "loss": loss_sum / len(goods),
        "accuracy": right / len(goods),
        "auroc": auroc(probabilities, goods),
        "mean_p_good": {
            "good_steps": _mean(p for p, g in zip(probabilities, goods) if g),
            "bad_steps": _mean(p for p, g in zip(probabilities, goods) if not g),
        },
    }


def _mean(values: Any) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def fit(options: TrainOptions, data: StepData, staging: Path) -> dict[str, Any]:
    """Train on `data` and save the model and tokenizer into `staging`; return the card
    (all but the wall time)."""
    torch.manual_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(options.base)
    tokens = prepare_tokens(tokenizer)
    train_examples, val_examples = split_by_prompt(
        data.examples, options.val_fraction, options.seed
    )
    train_set, cut = encode_all(tokenizer, tokens, train_examples, options.max_length)
    val_set, val_cut = encode_all(tokenizer, tokens, val_examples, options.max_length)
    notes = list(data.notes)
    if cut or val_cut:
        notes.append(
            f"{cut + val_cut} step labels lay beyond --max-length "
            f"{options.max_length} tokens and were not used"
        )
    if not train_set:
        raise ValueError("no training record has a step within --max-length tokens")
    save_dtype = dtype_of(AutoConfig.from_pretrained(options.base))
    model = AutoModelForCausalLM.from_pretrained(options.base, dtype=torch.float32)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    label_ids = (tokens.good, tokens.bad)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    collator = StepCollator(pad_id)
    before = evaluate(model, val_set, collator, label_ids, options.batch_size)

    per_epoch = math.ceil(len(train_set) / (options.batch_size * options.grad_accum))
    total = options.max_steps or max(1, math.ceil(options.epochs * per_epoch))
    bf16 = bf16_training(options.dtype)
    args = TrainingArguments(
        output_dir=str(staging / "trainer"),
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.lr,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps or -1,
        warmup_steps=math.ceil(0.05 * total),
        lr_scheduler_type="linear",
        logging_steps=max(1, total // 20),
        save_strategy="no",
        report_to="none",
        seed=options.seed,
        bf16=bf16,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        disable_tqdm=False,
    )
    trainer = StepLabelTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collator,
        callbacks=list(options.callbacks),
        label_ids=label_ids,
    )
    result = trainer.train()
    after = evaluate(model, val_set, collator, label_ids, options.batch_size)

    save_model(model, tokenizer, save_dtype, options.base, staging)

    return {
        "card_format": 1,
        "kind": "math-shepherd",
        "output": str(options.out),
        "base_model": str(options.base),
        "data": {"file": str(options.data), **label_balance(data.examples)},
        "train": label_balance(train_examples),
        "validation": label_balance(val_examples),
        "tokens": {
            "step_tag": SHEPHERD_STEP_TAG,
            "step_tag_id": tokens.tag,
            "step_tag_added": tokens.tag_added,
            "good_label": GOOD_LABEL,
            "good_id": tokens.good,
            "bad_label": BAD_LABEL,
            "bad_id": tokens.bad,
        },
        "hyperparameters": {
            **options_summary(options),
            "bf16_autocast": bf16,
            "warmup_steps": args.warmup_steps,
            "scheduler": "linear",
            "saved_dtype": str(save_dtype).removeprefix("torch."),
        },
        "training": training_summary(trainer, result, trainer.tokens_trained),
        "validation_before": before,
        "validation_after": after,
        "notes": notes,
    }

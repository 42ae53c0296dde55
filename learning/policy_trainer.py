"""The torch half of `ponder learn train-policy`: TRL's `SFTTrainer` or `DPOTrainer` on
the checked records, validation before and after, and the saved folder.

Imported by `learning.train_policy` only once the inputs have been checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import trl
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from learning.torch_training import bf16_training, dtype_of, save_model, training_summary
from learning.train_policy import PolicyExample, PolicyOptions
from learning.training import options_summary, split_by_group

#: Validation figures kept on the card, by method (TRL's metric names, `eval_` dropped).
VALIDATION_KEYS = {
    "sft": ("loss", "mean_token_accuracy"),
    "dpo": ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"),
}


#: Options a card records beyond the common ones.
METHOD_FIELDS = {"sft": ("method",), "dpo": ("method", "beta")}


def _config(options: PolicyOptions, staging: Path, total_steps: int) -> Any:
    """TRL's config with the settings this project depends on spelt out: TRL defaults
    to bf16 and gradient checkpointing, both slow on an AVX2 CPU."""
    common: dict[str, Any] = {
        "output_dir": str(staging / "trainer"),
        "per_device_train_batch_size": options.batch_size,
        "per_device_eval_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.grad_accum,
        "learning_rate": options.lr,
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps or -1,
        "warmup_steps": math.ceil(0.05 * total_steps),
        "lr_scheduler_type": "linear",
        "logging_steps": max(1, total_steps // 20),
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "seed": options.seed,
        "bf16": bf16_training(options.dtype),
        "gradient_checkpointing": False,
        "max_length": options.max_length,
        "dataloader_pin_memory": False,
        "disable_tqdm": False,
        "dataset_num_proc": None,
    }
    if options.method == "sft":
        return SFTConfig(**common, completion_only_loss=True, packing=False)
    return DPOConfig(**common, beta=options.beta)


def _validation(trainer: Any, method: str, has_eval: bool) -> dict[str, Any]:
    if not has_eval:
        return {}
    metrics = trainer.evaluate()
    return {key: metrics.get(f"eval_{key}") for key in VALIDATION_KEYS[method]}


def fit(options: PolicyOptions, examples: Sequence[PolicyExample], staging: Path) -> dict[str, Any]:
    """Train on `examples` and save model and tokenizer into `staging`; return the card
    (all but the wall time)."""
    torch.manual_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(options.base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train, validation = split_by_group(
        examples, lambda e: e.question, options.val_fraction, options.seed
    )
    save_dtype = dtype_of(AutoConfig.from_pretrained(options.base))
    model = AutoModelForCausalLM.from_pretrained(options.base, dtype=torch.float32)
    per_epoch = math.ceil(len(train) / (options.batch_size * options.grad_accum))
    total = options.max_steps or max(1, math.ceil(options.epochs * per_epoch))
    args = _config(options, staging, total)
    trainer_class = SFTTrainer if options.method == "sft" else DPOTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([e.as_row() for e in train]),
        eval_dataset=Dataset.from_list([e.as_row() for e in validation]) if validation else None,
        processing_class=tokenizer,
        callbacks=list(options.callbacks),
    )
    before = _validation(trainer, options.method, bool(validation))
    result = trainer.train()
    after = _validation(trainer, options.method, bool(validation))
    save_model(trainer.model, tokenizer, save_dtype, options.base, staging)

    tokens = int(getattr(trainer, "_total_train_tokens", 0))
    return {
        "card_format": 1,
        "kind": "policy",
        "method": options.method,
        "trl_version": trl.__version__,
        "output": str(options.out),
        "base_model": str(options.base),
        "data": {"file": str(options.data), "records": len(examples)},
        "train": {"records": len(train), "questions": len({e.question for e in train})},
        "validation": {
            "records": len(validation),
            "questions": len({e.question for e in validation}),
        },
        "hyperparameters": {
            **options_summary(options, METHOD_FIELDS[options.method]),
            "bf16_autocast": args.bf16,
            "warmup_steps": args.warmup_steps,
            "scheduler": "linear",
            "saved_dtype": str(save_dtype).removeprefix("torch."),
        },
        "training": training_summary(trainer, result, tokens),
        "validation_before": before,
        "validation_after": after,
        "notes": [] if validation else ["no validation set (--val-fraction 0 or one question)"],
    }

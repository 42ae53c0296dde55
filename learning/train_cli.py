"""`ponder learn train-prm` (a stepwise-supervision file into a PRM folder that
`ponder serve --prm` loads) and `ponder learn train-policy` (an SFT or DPO file into a
policy folder that `ponder serve --policy` loads). Both take the same training flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from learning.train_policy import DEFAULT_LR, METHODS, PolicyOptions, train_policy
from learning.train_prm import TrainOptions, default_base_model, train_prm

_TRAIN_PRM_EPILOG = """\
Each record is rendered as Ponder's math-shepherd PRM client renders a solution
(`question Step 1: ... ки\\nStep 2: ... ки`); at every `ки` the model learns to put
the next token's weight on `+` for a right step and `-` for a wrong one (two-way
cross-entropy on those two logits). Whole questions are held out for validation
(--val-fraction); the card (MODEL_CARD.md, card.json) gives step-level accuracy and
AUROC of P(+) on them before and after training. The folder appears only when
training has finished.

example:
  ponder learn train-prm prm.jsonl --out models/prm-v1 --epochs 1
  ponder serve --prm models/prm-v1 --prm-kind math-shepherd
"""

_TRAIN_POLICY_EPILOG = """\
sft: supervised fine-tuning on the right samples (`export --format sft`), the loss on
the solution only: one round of expert iteration. dpo: direct preference optimisation
on right/wrong pairs of the same problem (`export --format dpo`), the base as the
reference. Whole questions are held out for validation (--val-fraction); the card
(MODEL_CARD.md, card.json) gives TRL's validation metrics before and after. The folder
appears only when training has finished.

example:
  ponder learn export data/arith-train --format sft --out sft.jsonl
  ponder learn train-policy sft.jsonl --method sft --out models/policy-ei1
  ponder serve --policy models/policy-ei1
"""


def add_training_arguments(parser: argparse.ArgumentParser, lr_help: str) -> None:
    """The flags every `train-*` command takes (defaults: `TrainOptions`)."""
    defaults = TrainOptions(data=Path(), out=Path())
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help=f"base causal LM folder (default: the embedded model, {default_base_model()})",
    )
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs")
    parser.add_argument("--lr", type=float, default=None, help=lr_help)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--grad-accum", type=int, default=defaults.grad_accum, help="batches per optimizer step"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=defaults.max_length,
        help="tokens per record; what lies beyond is not trained on",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=defaults.val_fraction,
        help="share of questions held out for validation (0: none)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="training precision; auto: bf16 autocast on CUDA or CPUs with "
        "bf16 instructions, else float32",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (only once the new model is complete)",
    )


def training_options(args: argparse.Namespace, lr: float) -> dict[str, Any]:
    """`TrainOptions` fields from the parsed common flags."""
    return {
        "data": args.data,
        "out": args.out,
        "base": args.base or default_base_model(),
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "lr": lr,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_length": args.max_length,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "dtype": args.dtype,
        "overwrite": args.overwrite,
    }


def train_prm_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder learn train-prm",
        description="Train a process reward model (Math-Shepherd format: `+`/`-` logits at "
        "each `ки`) on a stepwise-supervision file, with transformers' Trainer.",
        epilog=_TRAIN_PRM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "data",
        type=Path,
        help="JSONL of {prompt, completions, labels} (`ponder learn export --format prm`)",
    )
    default_lr = TrainOptions(data=Path(), out=Path()).lr
    add_training_arguments(
        parser, f"peak learning rate (linear decay, 5%% warm-up; default {default_lr})"
    )
    return parser


def train_policy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder learn train-policy",
        description="Fine-tune the policy on its own search results with TRL: SFT on the "
        "right samples (expert iteration) or DPO on right/wrong pairs.",
        epilog=_TRAIN_POLICY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "data",
        type=Path,
        help="JSONL from `ponder learn export --format sft` (sft) or `--format dpo` (dpo)",
    )
    parser.add_argument("--method", choices=METHODS, default="sft")
    parser.add_argument(
        "--beta",
        type=float,
        default=PolicyOptions(data=Path(), out=Path()).beta,
        help="dpo: how far the policy may move from the base (higher: less)",
    )
    lrs = ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items())
    add_training_arguments(
        parser, f"peak learning rate (linear decay, 5%% warm-up; default by method: {lrs})"
    )
    return parser


def run_train_prm(argv: list[str]) -> int:
    args = train_prm_parser().parse_args(argv)
    lr = args.lr or TrainOptions(data=Path(), out=Path()).lr
    try:
        card = train_prm(TrainOptions(**training_options(args, lr)))
    except (ValueError, OSError, ImportError) as error:
        print(f"ponder learn train-prm: {error}", file=sys.stderr)
        return 2
    _print_training(card)
    before, after = card["validation_before"], card["validation_after"]
    if after["steps"]:
        print(
            f"validation ({after['steps']} steps): accuracy {before['accuracy']:.3f} -> "
            f"{after['accuracy']:.3f}, AUROC {_fmt(before['auroc'])} -> {_fmt(after['auroc'])}"
        )
    print(f"-> {args.out} (serve: ponder serve --prm {args.out} --prm-kind math-shepherd)")
    return 0


def run_train_policy(argv: list[str]) -> int:
    args = train_policy_parser().parse_args(argv)
    options = PolicyOptions(
        **training_options(args, args.lr or DEFAULT_LR[args.method]),
        method=args.method,
        beta=args.beta,
    )
    try:
        card = train_policy(options)
    except (ValueError, OSError, ImportError) as error:
        print(f"ponder learn train-policy: {error}", file=sys.stderr)
        return 2
    _print_training(card)
    before, after = card["validation_before"], card["validation_after"]
    for key in after:
        print(f"validation {key}: {_fmt(before.get(key))} -> {_fmt(after.get(key))}")
    print(f"-> {args.out} (serve: ponder serve --policy {args.out})")
    return 0


def _print_training(card: dict[str, Any]) -> None:
    for note in card["notes"]:
        print(f"note: {note}", file=sys.stderr)
    training = card["training"]
    print(
        f"{training['steps']} steps, train loss {training['train_loss']:.4f}, "
        f"{training['tokens_per_s']} tokens/s"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

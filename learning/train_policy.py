"""`ponder learn train-policy`: fine-tune the policy on its own search results.

Two methods, both with TRL's trainers (no hand-written loop):

- `sft`: behaviour cloning of the right samples (`export --format sft`: `messages`
  ending in the assistant's solution), i.e. one round of expert iteration /
  rejection-sampling fine-tuning (STaR, ReST-EM). The loss is on the solution only.
- `dpo`: direct preference optimisation on right/wrong pairs of the same problem
  (`export --format dpo`: `prompt`, `chosen`, `rejected`).

The output is a model folder `ponder serve --policy DIR` loads in vLLM (safetensors in
the base's dtype, tokenizer, chat template) with a card (MODEL_CARD.md, card.json).
Everything that can be refused is checked before torch is imported; the folder
appears only once training has finished (`learning.training.write_model_folder`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learning.training import TrainOptions, check_paths, metric, train_into_folder

METHODS = ("sft", "dpo")
#: Peak learning rates by method when --lr is not given: SFT moves the model towards
#: its own right samples; DPO's implicit reward is sharper and wants a smaller step.
DEFAULT_LR = {"sft": 1e-5, "dpo": 5e-6}
Message = dict[str, str]


@dataclass
class PolicyOptions(TrainOptions):
    method: str = "sft"
    #: DPO's beta: how far the policy may move from the reference (the base).
    beta: float = 0.1


@dataclass(frozen=True)
class PolicyExample:
    """One training record in TRL's conversational prompt-completion shape."""

    prompt: tuple[Message, ...]
    completion: Message  # sft: the solution; dpo: the chosen solution
    rejected: Message | None = None  # dpo only

    @property
    def question(self) -> str:
        """The group validation holds out whole: the last user message."""
        return next(m["content"] for m in reversed(self.prompt) if m["role"] == "user")

    def as_row(self) -> dict[str, Any]:
        if self.rejected is None:
            return {"prompt": list(self.prompt), "completion": [self.completion]}
        return {
            "prompt": list(self.prompt),
            "chosen": [self.completion],
            "rejected": [self.rejected],
        }


_SHAPES = {
    "sft": '{"messages": [{"role": "user", ...}, ..., {"role": "assistant", ...}]} '
    "(`ponder learn export --format sft`)",
    "dpo": '{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant '
    "message]} (`ponder learn export --format dpo`)",
}


class _Refused(ValueError):
    pass


def _messages(value: Any, what: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise _Refused(f"'{what}' must be a non-empty list of messages")
    for message in value:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("system", "user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise _Refused(f"'{what}' holds a message that is not {{role, content}}")
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _answer(value: Any, what: str) -> Message:
    messages = _messages(value, what)
    if len(messages) != 1 or messages[0]["role"] != "assistant" or not messages[0]["content"]:
        raise _Refused(f"'{what}' must be one non-empty assistant message")
    return messages[0]


def _prompt(messages: tuple[Message, ...], what: str) -> tuple[Message, ...]:
    if not any(m["role"] == "user" for m in messages) or messages[-1]["role"] == "assistant":
        raise _Refused(f"'{what}' must hold a user message and end before the answer")
    return messages


def parse_row(row: Any, method: str) -> PolicyExample:
    if not isinstance(row, dict):
        raise _Refused("not a JSON object")
    if method == "sft":
        messages = _messages(row.get("messages"), "messages")
        return PolicyExample(
            _prompt(messages[:-1], "messages"), _answer([messages[-1]], "messages[-1]")
        )
    return PolicyExample(
        _prompt(_messages(row.get("prompt"), "prompt"), "prompt"),
        _answer(row.get("chosen"), "chosen"),
        _answer(row.get("rejected"), "rejected"),
    )


def load_policy_data(path: Path, method: str) -> list[PolicyExample]:
    """Read and check an `export --format sft|dpo` file; a bad line is named."""
    if method not in METHODS:
        raise ValueError(f"--method: unknown {method!r}; one of {', '.join(METHODS)}")
    if not path.is_file():
        raise FileNotFoundError(
            f"data file {path} not found" if not path.exists() else f"{path} is not a file"
        )
    examples: list[PolicyExample] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                examples.append(parse_row(json.loads(line), method))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
            except _Refused as error:
                raise ValueError(
                    f"{path}:{number}: {error} (--method {method} expects {_SHAPES[method]})"
                ) from None
    if not examples:
        raise ValueError(f"data file {path} has no records to train on")
    return examples


def check_policy_options(options: PolicyOptions) -> None:
    check_paths(options)
    if options.method not in METHODS:
        raise ValueError(f"--method: unknown {options.method!r}; one of {', '.join(METHODS)}")
    if options.beta <= 0:
        raise ValueError("--beta must be positive")


def train_policy(options: PolicyOptions) -> dict[str, Any]:
    """Train and save the policy into `options.out`; return the card (also saved there)."""
    check_policy_options(options)
    examples = load_policy_data(options.data, options.method)
    try:
        from learning import policy_trainer  # torch, transformers and TRL from here on
    except ImportError as error:
        raise ImportError(
            f"train-policy needs torch, transformers and trl ({error}); "
            "install the learn extra with the cpu or gpu one (`make install`)"
        ) from error
    return train_into_folder(
        options.out, lambda staging: policy_trainer.fit(options, examples, staging), card_markdown
    )


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people; `card.json` holds the same facts for programs."""
    before, after, training = card["validation_before"], card["validation_after"], card["training"]
    what = {
        "sft": "supervised fine-tuning on right samples (expert iteration; loss on the "
        "solution only)",
        "dpo": "direct preference optimisation on right/wrong pairs of the same problem",
    }[card["method"]]
    lines = [
        f"# Policy trained by `ponder learn train-policy --method {card['method']}`",
        "",
        f"Serve it: `ponder serve --policy {card['output']}`",
        "",
        f"- Method: {what}, TRL {card['trl_version']}",
        f"- Base model: `{card['base_model']}`",
        (
            f"- Data: `{card['data']['file']}`: {card['data']['records']} records; train "
            f"{card['train']['records']}, validation {card['validation']['records']} "
            "(questions not in training)"
        ),
        f"- Hyper-parameters: {json.dumps(card['hyperparameters'])}",
        (
            f"- Training: {training['steps']} optimizer steps, train loss "
            f"{metric(training['train_loss'])}, {training['tokens_per_s']} tokens/s, "
            f"{card.get('wall_s')} s in all"
        ),
        "",
        "| validation | before | after |",
        "| --- | --- | --- |",
    ]
    for key in sorted(set(before) | set(after)):
        lines.append(f"| {key} | {metric(before.get(key))} | {metric(after.get(key))} |")
    lines += ["", *(f"Note: {note}" for note in card.get("notes", []))]
    return "\n".join(lines) + "\n"

"""The exact inputs the learned PRMs were trained on, as the model cards give them.

A PRM scores well only on the format it was trained with, so each format is written
down here once, with its source, and kept free of any transport: the same messages
and strings go to an in-process engine and to a remote `vllm serve`.

- Qwen2.5-Math-PRM (https://huggingface.co/Qwen/Qwen2.5-Math-PRM-7B, "Quick Start"):
  chat of system "Please reason step by step, and put your final answer within
  \\boxed{}.", user = the question, assistant = the steps, each followed by
  `<extra_0>` (`"<extra_0>".join(steps) + "<extra_0>"`), rendered by the model's chat
  template without a generation prompt. The classifier head's softmax at every
  `<extra_0>` is [P(wrong), P(right)]; the step reward is P(right), column 1.
- Math-Shepherd (https://huggingface.co/peiyi9979/math-shepherd-mistral-7b-prm):
  plain text `f"{question} {output}"` where output is `"Step 1: ... ки\\nStep 2: ...
  ки"`, tokenised with the tokenizer's special tokens (BOS). At each `ки` the LM's
  next-token logits restricted to `+` and `-` give the step reward
  P(+) / (P(+) + P(-)).
- RLHFlow Llama3.1-8B-PRM (https://huggingface.co/RLHFlow/Llama3.1-8B-PRM-Deepseek-Data,
  also -Mistral-Data): a chat where the first user turn is `question + " " + step 1`,
  each later user turn is one step, and every assistant turn answers `+` (the
  earlier steps are taken as correct, as in the card's evaluation loop). The card
  reads the logits at position -3 of the conversation ending in the assistant's `+`,
  the position that predicts that `+`; the same logits are the next-token
  distribution of the conversation rendered up to step k with the generation
  prompt, which is what we send. Reward: P(+) / (P(+) + P(-)).

The label tokens are the last token of encoding "+" and "-" without special tokens
(the cards' `tokenizer.encode("+")[-1]`; for Mistral's tokenizer that is `▁+`, as in
Math-Shepherd's `encode("+ -")[1:]`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from search_strategies.protocols import ChatMessage

QWEN_STEP_TAG = "<extra_0>"
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
SHEPHERD_STEP_TAG = "ки"
GOOD_LABEL, BAD_LABEL = "+", "-"
_NUMBERED = re.compile(r"^Step \d+\s*:", re.IGNORECASE)


def qwen_prm_messages(question: str, steps: Sequence[str]) -> list[ChatMessage]:
    """Qwen2.5-Math-PRM's chat: every step followed by the step tag."""
    return [
        ChatMessage("system", QWEN_SYSTEM),
        ChatMessage("user", question),
        ChatMessage("assistant", "".join(step + QWEN_STEP_TAG for step in steps)),
    ]


def math_shepherd_text(question: str, steps: Sequence[str]) -> str:
    """Math-Shepherd's input: `question Step 1: ... ки\\nStep 2: ... ки`.

    Steps are numbered as in the card unless the policy already wrote "Step n:".
    """
    lines = []
    for number, step in enumerate(steps, start=1):
        body = step.strip()
        if not _NUMBERED.match(body):
            body = f"Step {number}: {body}"
        lines.append(f"{body} {SHEPHERD_STEP_TAG}")
    return f"{question} " + "\n".join(lines)


def rlhflow_messages(question: str, steps: Sequence[str], upto: int) -> list[ChatMessage]:
    """RLHFlow's chat up to step `upto` (0-based), to be rendered with the generation
    prompt so the next token is that step's `+`/`-` label."""
    turns: list[ChatMessage] = []
    for index, step in enumerate(steps[: upto + 1]):
        text = f"{question} {step}" if index == 0 else step
        if turns:
            turns.append(ChatMessage("assistant", GOOD_LABEL))
        turns.append(ChatMessage("user", text))
    return turns


def positions_of(token_ids: Sequence[int], tag_id: int) -> list[int]:
    """Indices of `tag_id` in `token_ids`."""
    return [i for i, token in enumerate(token_ids) if token == tag_id]


def good_probability(good_logprob: float, bad_logprob: float) -> float:
    """P(good) / (P(good) + P(bad)) from two log-probabilities, computed stably."""
    if math.isnan(good_logprob) or math.isnan(bad_logprob):
        return math.nan  # validate_scores turns this into an error naming the backend
    if good_logprob == bad_logprob:  # also covers both -inf
        return 0.5
    return 1.0 / (1.0 + math.exp(min(700.0, bad_logprob - good_logprob)))

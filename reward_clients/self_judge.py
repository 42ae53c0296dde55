"""Self-judge: the policy model grades each step itself, from its own logprobs.

It needs no weights beyond the policy's, so it works with any policy, including the
embedded default. For every step we ask, in one batched engine call for all steps
of all solutions, "is the new step correct? Answer yes or no", generate one token
and read the probability mass of "yes" against "no" among the most likely first
tokens. When neither appears (a small model may answer something else), the step
scores a neutral 0.5.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from search_strategies.protocols import ChatMessage, Completion, Policy, SamplingConfig
from search_strategies.reward import Aggregation, count_reward_tokens

JUDGE_SYSTEM = "You check math solutions step by step. Answer with a single word: yes or no."
_YES = {"yes", "y", "correct", "true"}
_NO = {"no", "n", "incorrect", "false", "wrong"}
NEUTRAL = 0.5


def judge_messages(question: str, steps: Sequence[str], index: int) -> list[ChatMessage]:
    """The prompt asking whether `steps[index]` is correct given the steps before it."""
    earlier = "\n\n".join(steps[:index]) or "(no earlier steps)"
    return [
        ChatMessage("system", JUDGE_SYSTEM),
        ChatMessage(
            "user",
            f"Problem:\n{question}\n\nEarlier steps:\n{earlier}\n\n"
            f"New step:\n{steps[index]}\n\nIs the new step correct? Answer yes or no.",
        ),
    ]


def probability_of_yes(completion: Completion) -> float:
    """P(yes) / (P(yes) + P(no)) over the first token's top alternatives."""
    if not completion.top_logprobs:
        return NEUTRAL
    yes = no = 0.0
    for token, logprob in completion.top_logprobs[0].items():
        word = token.strip().lower()
        if word in _YES:
            yes += math.exp(logprob)
        elif word in _NO:
            no += math.exp(logprob)
    return yes / (yes + no) if yes + no > 0 else NEUTRAL


class SelfJudge:
    """A `RewardModel` that asks the policy to grade every step (one engine call)."""

    #: Each step is judged on its own ("is the new step correct?"), so one bad step
    #: must sink the solution: its last score says nothing about the earlier steps.
    default_aggregation: Aggregation = "min"

    def __init__(self, policy: Policy, top_logprobs: int = 20) -> None:
        self._policy = policy
        self._top_logprobs = top_logprobs

    @property
    def name(self) -> str:
        return "self-judge"

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        prompts = await asyncio.gather(
            *(
                self._policy.encode_chat(judge_messages(question, steps, index))
                for steps in solutions
                for index in range(len(steps))
            )
        )
        if not prompts:
            return [[] for _ in solutions]
        generations = await self._policy.generate(
            prompts,
            SamplingConfig(n=1, max_tokens=1, temperature=0.0, top_logprobs=self._top_logprobs),
        )
        count_reward_tokens(
            sum(g.prompt_tokens + sum(c.num_tokens for c in g.completions) for g in generations)
        )
        flat = iter(probability_of_yes(g.completions[0]) for g in generations)
        return [[next(flat) for _ in steps] for steps in solutions]

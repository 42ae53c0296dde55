"""A scripted policy for unit-testing strategy logic without an engine.

Never the only test of a feature: the same behaviour is tested over HTTP against
real vLLM in test_solve_http.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from search_strategies.budget import (
    Budget,
    BudgetLimits,
    MeteredPolicy,
    MeteredReward,
    ProgressSink,
)
from search_strategies.context import SearchContext
from search_strategies.params import StrategyParams
from search_strategies.protocols import (
    ChatMessage,
    Completion,
    Generation,
    Policy,
    Problem,
    SamplingConfig,
)
from search_strategies.results import SearchResult
from search_strategies.reward import RewardModel


def char_completion(full: str, params: SamplingConfig, logprob: float) -> Completion:
    """`full` as a completion of one token per character, cut at `params.max_tokens`."""
    text = full[: params.max_tokens]
    return Completion(
        token_ids=tuple(ord(c) for c in text),
        text=text,
        logprobs=(logprob,) * len(text),
        finish_reason="stop" if text == full else "length",
    )


@dataclass
class ScriptedPolicy:
    """Returns the scripted texts in order, one token per character, cut at max_tokens."""

    texts: list[str]
    logprob: float = -0.5
    delay_s: float = 0.0
    calls: list[tuple[int, SamplingConfig]] = field(default_factory=list)
    model_name: str = "scripted"

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return [ord(c) for m in messages for c in m.content]

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        self.calls.append((len(prompts), params))
        await asyncio.sleep(self.delay_s)
        result = []
        for prompt in prompts:
            samples = [
                char_completion(self.texts[index % len(self.texts)], params, self.logprob)
                for index in range(params.n)
            ]
            result.append(Generation(prompt_tokens=len(prompt), completions=tuple(samples)))
        return result


#: Separates the question from the solution so far in `TreePolicy` prompts.
SOLUTION_START = 0


@dataclass
class TreePolicy:
    """A known tree of reasoning steps, for testing step-level search exactly.

    `tree[prefix]` lists the steps that may follow the solution text `prefix` ("" at
    the root). Sample i of a prompt takes option i mod len(options) (greedy: option
    0). One token per character, like `ScriptedPolicy`. A step ending in the stop
    string continues the solution; any other step ends it (EOS).
    """

    tree: dict[str, list[str]]
    logprob: float = -0.5
    delay_s: float = 0.0
    calls: list[tuple[int, SamplingConfig]] = field(default_factory=list)
    model_name: str = "tree"

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return [ord(c) for m in messages for c in m.content] + [SOLUTION_START]

    def _continuation(self, prefix: str, index: int, params: SamplingConfig) -> str:
        options = self.tree.get(prefix, [])
        if not options:
            return ""
        step = options[0 if params.temperature == 0 else index % len(options)]
        if params.stop or prefix + step not in self.tree:
            return step
        # No stop string: run on greedily to the end of the solution.
        return step + self._continuation(prefix + step, 0, params)

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        self.calls.append((len(prompts), params))
        await asyncio.sleep(self.delay_s)
        result = []
        for prompt in prompts:
            start = len(prompt) - 1 - list(reversed(prompt)).index(SOLUTION_START)
            prefix = "".join(chr(i) for i in prompt[start + 1 :])
            samples = [
                char_completion(self._continuation(prefix, index, params), params, self.logprob)
                for index in range(params.n)
            ]
            result.append(Generation(prompt_tokens=len(prompt), completions=tuple(samples)))
        return result


@dataclass
class TableReward:
    """Scores each step from a table (unknown steps get `default`)."""

    table: dict[str, float]
    default: float = 0.5
    calls: list[int] = field(default_factory=list)
    name: str = "table"

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        self.calls.append(len(solutions))
        return [[self.table.get(step, self.default) for step in steps] for steps in solutions]


def run_search(
    strategy: Callable[..., Awaitable[SearchResult]],
    params: StrategyParams,
    policy: Policy,
    reward: RewardModel,
    limits: BudgetLimits = BudgetLimits(),
    on_progress: ProgressSink | None = None,
) -> SearchResult:
    """Run one strategy on "q?" under `limits`, metered as the server meters it;
    `on_progress` hears of every wave."""
    budget = Budget(limits, on_progress=on_progress)
    context = SearchContext(
        Problem("q?"), MeteredPolicy(policy, budget), budget, MeteredReward(reward, budget)
    )
    return asyncio.run(strategy(context, params))


# -- a known tree of steps with a trap ---------------------------------------------
# The first step "A" scores best, but only the "B" branch leads to the best leaf
# (\boxed{7}, reward 1.0): greedy search falls for the trap, wider searches do not.

D = "\n\n"
TRAP_TREE = {
    "": ["A" + D, "B" + D, "C" + D],
    "A" + D: ["A1" + D, "A2" + D],
    "B" + D: ["B1" + D, "B2" + D],
    "C" + D: ["C1" + D],
    "A" + D + "A1" + D: ["\\boxed{1}"],
    "A" + D + "A2" + D: ["\\boxed{2}"],
    "B" + D + "B1" + D: ["\\boxed{8}"],
    "B" + D + "B2" + D: ["\\boxed{7}"],
    "C" + D + "C1" + D: ["\\boxed{3}"],
}
TRAP_REWARDS = {
    "A": 0.6,
    "B": 0.5,
    "C": 0.2,
    "A1": 0.3,
    "A2": 0.25,
    "B1": 0.4,
    "B2": 0.8,
    "C1": 0.1,
    "\\boxed{1}": 0.2,
    "\\boxed{2}": 0.2,
    "\\boxed{8}": 0.3,
    "\\boxed{7}": 1.0,
    "\\boxed{3}": 0.1,
}

"""Step-level search trees shared by beam search, DVTS and MCTS.

A node is one reasoning step. It keeps the token ids it was generated as and the
full prompt-plus-path ids, so a child is prompted with its parent's ids plus nothing
re-tokenized: vLLM's prefix cache serves everything the siblings share.

Expansion and scoring go out in waves: `expand` sends every parent of a wave to the
engine in ONE call (parents × width samples; a parent listed k times, as a resampled
particle is, is one prompt sampled k × width ways), `score` sends every new node to
the reward backend in ONE call. Each parent's step is capped by its OWN remaining
solution tokens, so one long path never cuts the others' steps short; as a call
carries one `max_tokens`, parents whose caps differ (rare) go out as concurrent
calls, one per cap. `expand` sizes a wave to what the budget can pay for in full,
so a step search never spends past `max_tokens`.

The step that reaches `max_steps` is generated to the end of the solution (no step
delimiter, up to the solution's remaining tokens), as search-and-learn's final
iteration does: a path never ends half-written just because it ran out of steps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from search_strategies.answers import last_boxed
from search_strategies.budget import (
    Budget,
    BudgetExhausted,
    MeteredPolicy,
    MeteredReward,
    StopReason,
)
from search_strategies.params import StrategyParams
from search_strategies.protocols import Completion, Generation, SamplingConfig
from search_strategies.results import TraceNode
from search_strategies.reward import Aggregation, aggregate
from search_strategies.steps import split_steps


class NodeStatus(str, enum.Enum):
    """Whether a path can grow, and if not, why it ended."""

    OPEN = "open"
    ANSWERED = "answered"  # wrote a closed \boxed{...}
    EOS = "eos"  # the model ended the solution
    MAX_TOKENS = "max_tokens"  # the solution used its max_new_tokens (or the budget)


@dataclass(frozen=True)
class StepConfig:
    """Where steps end and how long a solution may grow."""

    delimiter: str = "\n\n"
    max_step_tokens: int = 128
    max_steps: int = 10
    max_solution_tokens: int = 512


#: A strategy's statistics of a node for its trace: `TraceNode` fields by name.
NodeStats = Callable[["StepNode"], dict[str, Any]]


@dataclass(eq=False)
class StepNode:
    """One step of a solution (the root is the empty step: the prompt)."""

    id: int
    parent: StepNode | None
    #: Prompt ids followed by every step's ids down to this node.
    ids: tuple[int, ...]
    text: str = ""
    step_tokens: int = 0
    logprob_sum: float = 0.0
    depth: int = 0
    #: Generated tokens on the path from the root to here.
    solution_tokens: int = 0
    status: NodeStatus = NodeStatus.OPEN
    #: Reward of the path ending at this step (aggregated step scores).
    score: float | None = None
    children: list[StepNode] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status is not NodeStatus.OPEN

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / self.step_tokens if self.step_tokens else -math.inf

    def path(self) -> list[StepNode]:
        """The steps from the root's first child down to this node."""
        nodes: list[StepNode] = []
        node: StepNode | None = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def solution_text(self) -> str:
        return "".join(node.text for node in self.path())


class StepTree:
    """All nodes of one search, with the batched operations strategies build on."""

    def __init__(self, prompt_ids: Sequence[int], config: StepConfig) -> None:
        self.config = config
        self.root = StepNode(id=0, parent=None, ids=tuple(prompt_ids))
        self.nodes: list[StepNode] = [self.root]
        #: Set when the budget made the search smaller than its parameters asked.
        self.budget_limited = False

    # -- growing -----------------------------------------------------------------

    def add_child(self, parent: StepNode, completion: Completion, to_end: bool = False) -> StepNode:
        """Attach `completion` below `parent`; `to_end`: it was generated without a
        step stop, so it is the rest of the solution and the child is terminal."""
        child = StepNode(
            id=len(self.nodes),
            parent=parent,
            ids=parent.ids + completion.token_ids,
            text=completion.text,
            step_tokens=completion.num_tokens,
            logprob_sum=math.fsum(completion.logprobs),
            depth=parent.depth + 1,
            solution_tokens=parent.solution_tokens + completion.num_tokens,
        )
        child.status = self._status(child, completion, to_end)
        parent.children.append(child)
        self.nodes.append(child)
        return child

    def _status(self, node: StepNode, completion: Completion, to_end: bool) -> NodeStatus:
        """Why `node` ended, or OPEN. Without a step stop (`to_end`) a "stop" can only be
        the end of the solution, and anything else ran out of tokens."""
        if last_boxed(node.text) is not None:
            return NodeStatus.ANSWERED
        stopped = completion.finish_reason == "stop"
        if stopped and (to_end or not completion.text.endswith(self.config.delimiter)):
            return NodeStatus.EOS
        if to_end or node.solution_tokens >= self.config.max_solution_tokens:
            return NodeStatus.MAX_TOKENS
        return NodeStatus.OPEN

    def _remaining_solution_tokens(self, node: StepNode) -> int:
        return max(0, self.config.max_solution_tokens - node.solution_tokens)

    def is_last_step(self, parent: StepNode) -> bool:
        """Whether `parent`'s children reach `max_steps`, so their step must finish the
        solution rather than stop at the delimiter."""
        return parent.depth + 1 >= self.config.max_steps

    def step_cap(self, parent: StepNode) -> int:
        """New tokens the next step below `parent` may take: its own remaining solution
        tokens, and at most `max_step_tokens` unless it is the last step."""
        remaining = self._remaining_solution_tokens(parent)
        if self.is_last_step(parent):
            return remaining
        return min(self.config.max_step_tokens, remaining)

    def _affordable(
        self, budget: Budget, parents: list[StepNode], width: int
    ) -> tuple[list[StepNode], int]:
        """The parents (in priority order) and width whose steps the budget can pay
        for in full. Parents that do not fit are skipped; if none fits at `width`, the
        cheapest one gets as many samples as fit. Raises `BudgetExhausted` when not
        one step is affordable."""
        remaining = budget.remaining_tokens()
        if remaining is None:
            return parents, width
        kept: list[StepNode] = []
        left = remaining
        for parent in parents:
            cost = width * self.step_cap(parent)
            if cost <= left:
                kept.append(parent)
                left -= cost
        if not kept:
            cheapest = min(parents, key=self.step_cap)
            affordable = remaining // max(1, self.step_cap(cheapest))
            if affordable == 0:
                raise BudgetExhausted(budget.exhausted() or StopReason.TOKEN_BUDGET)
            kept, width = [cheapest], min(width, affordable)
            self.budget_limited = True
        if len(kept) < len(parents):
            self.budget_limited = True
        return kept, width

    def _step_sampling(
        self, params: StrategyParams, width: int, parent: StepNode
    ) -> SamplingConfig:
        """The sampling of `parent`'s next step: its own cap, and the step delimiter
        as stop unless the step is the last one."""
        stop = () if self.is_last_step(parent) else (self.config.delimiter,)
        return dataclasses.replace(params.sampling(width, self.step_cap(parent)), stop=stop)

    async def expand(
        self,
        policy: MeteredPolicy,
        budget: Budget,
        parents: Sequence[StepNode],
        width: int,
        params: StrategyParams,
    ) -> list[list[StepNode]]:
        """Sample `width` next steps for each entry of `parents`, in ONE engine call per
        distinct step sampling (one call in all unless caps or copy counts differ).

        A parent may be listed k times (a resampled particle): its copies share one
        prompt sampled k·width ways, so each copy gets its own samples even under a
        request seed (k identical prompts with one seed would draw identical steps).
        `parents` come in priority order: when the budget cannot afford the whole
        wave, the last entries that do not fit are dropped (and, if not even one
        entry's `width` fits, the width shrinks). Returns one list of new children per
        entry, in the same order: empty for a terminal or dropped entry. Raises
        `BudgetExhausted` when not one step is affordable.
        """
        open_parents = [p for p in parents if not p.terminal]
        if not open_parents:
            return [[] for _ in parents]
        kept, width = self._affordable(budget, open_parents, width)
        copies = Counter(p.id for p in kept)
        groups: dict[SamplingConfig, list[StepNode]] = {}
        for parent in {p.id: p for p in kept}.values():
            sampling = self._step_sampling(params, copies[parent.id] * width, parent)
            groups.setdefault(sampling, []).append(parent)
        generations = await _generate_concurrently(policy, groups)
        samples = {pid: iter(g.completions) for pid, g in generations.items()}
        children = [self._adopt(parent, copies, samples, width) for parent in parents]
        budget.usage.nodes += sum(len(kids) for kids in children)
        return children

    def _adopt(
        self,
        parent: StepNode,
        copies: Counter[int],
        samples: dict[int, Iterator[Completion]],
        width: int,
    ) -> list[StepNode]:
        """The next `width` of `parent`'s samples as children of this entry, while the
        budget kept copies of it (the first copies listed are the ones kept)."""
        if copies[parent.id] <= 0:
            return []
        copies[parent.id] -= 1
        to_end = self.is_last_step(parent)
        mine = itertools.islice(samples[parent.id], width)
        return [self.add_child(parent, completion, to_end) for completion in mine]

    async def complete_greedily(
        self, policy: MeteredPolicy, budget: Budget, node: StepNode, params: StrategyParams
    ) -> StepNode:
        """Finish a partial solution in one greedy call, as far as the budget allows.

        Returns the finished node, or `node` itself when nothing is affordable.
        """
        if node.terminal:
            return node
        tokens = self._remaining_solution_tokens(node)
        affordable = budget.affordable_samples(1)
        if affordable is not None and affordable < tokens:
            self.budget_limited = True
            tokens = affordable
        if tokens == 0 or budget.exhausted() is not None:
            return node
        sampling = dataclasses.replace(
            params.sampling(1, tokens), temperature=0.0, seed=None, stop=()
        )
        try:
            (generation,) = await policy.generate([node.ids], sampling)
        except BudgetExhausted:
            return node
        child = self.add_child(node, generation.completions[0], to_end=True)
        budget.usage.nodes += 1
        return child

    async def greedy_extensions(
        self,
        policy: MeteredPolicy,
        budget: Budget,
        nodes: Sequence[StepNode],
        params: StrategyParams,
        steps: int,
        max_tokens: int | None = None,
    ) -> list[str]:
        """Greedy text that would follow each node, NOT added to the tree.

        With `max_tokens` None: up to `steps` more steps (one engine call per step,
        all nodes together) - beam search's lookahead. With `max_tokens`: one call
        running on to the end of the solution - MCTS's rollout. A node that is
        terminal, or a wave the budget cannot afford, gets no extension ("").
        """
        extensions = [""] * len(nodes)
        ids = [node.ids for node in nodes]
        active = [i for i, node in enumerate(nodes) if not node.terminal]
        step_stop = (self.config.delimiter,) if max_tokens is None else ()
        tokens = self.config.max_step_tokens if max_tokens is None else max_tokens
        for _ in range(steps if max_tokens is None else 1):
            affordable = budget.affordable_samples(tokens)
            if not active:
                break
            if affordable is not None and affordable < len(active):
                self.budget_limited = True
                break
            sampling = dataclasses.replace(
                params.sampling(1, tokens), temperature=0.0, seed=None, stop=step_stop
            )
            generations = await policy.generate([ids[i] for i in active], sampling)
            still_open = []
            for i, generation in zip(active, generations, strict=True):
                completion = generation.completions[0]
                extensions[i] += completion.text
                ids[i] = ids[i] + completion.token_ids
                if completion.text.endswith(self.config.delimiter) and (
                    last_boxed(completion.text) is None
                ):
                    still_open.append(i)
            active = still_open
        return extensions

    # -- scoring -----------------------------------------------------------------

    async def score(
        self,
        reward: MeteredReward,
        question: str,
        nodes: Sequence[StepNode],
        aggregation: Aggregation,
        extensions: Sequence[str] | None = None,
    ) -> None:
        """Set `score` on every node from ONE reward call over their paths.

        `extensions` (lookahead or rollout text) are scored as part of the path,
        and the score is credited to the node they extend.
        """
        tails = extensions or [""] * len(nodes)
        paths = [
            split_steps(n.solution_text() + tail, self.config.delimiter)
            for n, tail in zip(nodes, tails, strict=True)
        ]
        scored = [i for i, steps in enumerate(paths) if steps]
        for i, node in enumerate(nodes):
            if not paths[i]:
                node.score = 0.0
        if not scored:
            return
        step_scores = await reward.score(question, [paths[i] for i in scored])
        for i, scores in zip(scored, step_scores, strict=True):
            nodes[i].score = aggregate(scores, aggregation)

    # -- reporting ---------------------------------------------------------------

    def report_wave(
        self, budget: Budget, best_score: float | None, stats: NodeStats | None = None
    ) -> None:
        """A wave ended: tell the budget's listener, with this tree (and `stats`) as
        the snapshot a streaming client rebuilds the search from."""
        budget.report_progress(best_score, lambda: self.trace(None, stats))

    def trace(self, chosen: StepNode | None, stats: NodeStats | None = None) -> list[TraceNode]:
        """Every node as a trace node; `stats` adds a strategy's own statistics (MCTS
        visits and value, particle weights), which it keeps itself, off the node."""
        on_path = {n.id for n in chosen.path()} | {0} if chosen else set()
        return [
            TraceNode(
                id=n.id,
                parent=n.parent.id if n.parent else None,
                text=n.text,
                num_tokens=n.step_tokens if n.parent else len(n.ids),
                chosen=n.id in on_path,
                score=n.score,
                **(stats(n) if stats else {}),
            )
            for n in self.nodes
        ]


async def _generate_concurrently(
    policy: MeteredPolicy, groups: dict[SamplingConfig, list[StepNode]]
) -> dict[int, Generation]:
    """Each group's parents in one call, all calls at once (the engine batches them
    together); generations by parent id. If one call fails (deadline), the others
    are cancelled and awaited, so nothing keeps running after the search stopped."""
    tasks = [
        asyncio.ensure_future(policy.generate([p.ids for p in group], sampling))
        for sampling, group in groups.items()
    ]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return {
        parent.id: generation
        for group, generations in zip(groups.values(), results, strict=True)
        for parent, generation in zip(group, generations, strict=True)
    }

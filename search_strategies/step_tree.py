"""Step-level search trees shared by beam search, DVTS and MCTS.

A node is one reasoning step. It keeps the token ids it was generated as and the
full prompt-plus-path ids, so a child is prompted with its parent's ids plus nothing
re-tokenized: vLLM's prefix cache serves everything the siblings share.

Expansion and scoring go out in waves: `expand` sends every parent of a wave to the
engine in ONE call (parents × width samples), `score` sends every new node to the
reward backend in ONE call. Before a wave, `expand` asks the budget how many samples
still fit and shrinks the wave to that, so a step search never spends past
`max_tokens` (stronger than the "one wave of overshoot" the API promises).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Sequence

from search_strategies.answers import extract_answer, last_boxed
from search_strategies.budget import (
    Budget,
    BudgetExhausted,
    MeteredPolicy,
    MeteredReward,
    StopReason,
)
from search_strategies.params import StrategyParams
from search_strategies.protocols import Completion
from search_strategies.results import Candidate, TraceNode
from search_strategies.reward import Aggregation, aggregate
from search_strategies.steps import split_steps


class NodeStatus(str, enum.Enum):
    """Whether a path can grow, and if not, why it ended."""

    OPEN = "open"
    ANSWERED = "answered"  # wrote a closed \boxed{...}
    EOS = "eos"  # the model ended the solution
    MAX_STEPS = "max_steps"
    MAX_TOKENS = "max_tokens"  # the solution used its max_new_tokens


@dataclass(frozen=True)
class StepConfig:
    """Where steps end and how long a solution may grow."""

    delimiter: str = "\n\n"
    max_step_tokens: int = 128
    max_steps: int = 10
    max_solution_tokens: int = 512


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
    #: Policy prior among siblings (MCTS); uniform until set.
    prior: float = 1.0
    visits: int = 0
    value_sum: float = 0.0
    children: list[StepNode] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status is not NodeStatus.OPEN

    @property
    def value(self) -> float:
        """Mean backed-up value (0 before the first visit)."""
        return self.value_sum / self.visits if self.visits else 0.0

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

    def add_child(self, parent: StepNode, completion: Completion) -> StepNode:
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
        child.status = self._status(child, completion)
        parent.children.append(child)
        self.nodes.append(child)
        return child

    def _status(self, node: StepNode, completion: Completion) -> NodeStatus:
        ended_on_delimiter = completion.text.endswith(self.config.delimiter)
        if last_boxed(node.text) is not None:
            return NodeStatus.ANSWERED
        if completion.finish_reason == "stop" and not ended_on_delimiter:
            return NodeStatus.EOS
        if node.solution_tokens >= self.config.max_solution_tokens:
            return NodeStatus.MAX_TOKENS
        if node.depth >= self.config.max_steps:
            return NodeStatus.MAX_STEPS
        return NodeStatus.OPEN

    def _remaining_solution_tokens(self, node: StepNode) -> int:
        return max(0, self.config.max_solution_tokens - node.solution_tokens)

    async def expand(
        self,
        policy: MeteredPolicy,
        budget: Budget,
        parents: Sequence[StepNode],
        width: int,
        params: StrategyParams,
    ) -> dict[int, list[StepNode]]:
        """Sample `width` next steps for each parent, all in ONE engine call.

        `parents` come in priority order: when the budget cannot afford the whole
        wave, the last parents are dropped (and, if not even one parent's `width`
        fits, the width shrinks). Returns new children by parent id; raises
        `BudgetExhausted` when not one step is affordable.
        """
        parents = [p for p in parents if not p.terminal]
        if not parents:
            return {}
        step_tokens = min(
            self.config.max_step_tokens,
            *(self._remaining_solution_tokens(p) for p in parents),
        )
        affordable = budget.affordable_samples(step_tokens)
        if affordable is not None:
            if affordable == 0:
                raise BudgetExhausted(budget.exhausted() or StopReason.TOKEN_BUDGET)
            if affordable < len(parents) * width:
                self.budget_limited = True
                parents = parents[: max(1, affordable // width)]
                width = min(width, affordable)
        sampling = dataclasses.replace(
            params.sampling(width, step_tokens), stop=(self.config.delimiter,)
        )
        generations = await policy.generate([p.ids for p in parents], sampling)
        children = {
            parent.id: [self.add_child(parent, c) for c in generation.completions]
            for parent, generation in zip(parents, generations, strict=True)
        }
        budget.usage.nodes += sum(len(c) for c in children.values())
        return children

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
        child = self.add_child(node, generation.completions[0])
        budget.usage.nodes += 1
        if child.status is NodeStatus.OPEN:  # ran out of tokens, not of things to say
            child.status = NodeStatus.MAX_TOKENS
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

    def trace(self, chosen: StepNode | None, with_stats: bool = False) -> list[TraceNode]:
        on_path = {n.id for n in chosen.path()} | {0} if chosen else set()
        return [
            TraceNode(
                id=n.id,
                parent=n.parent.id if n.parent else None,
                text=n.text,
                num_tokens=n.step_tokens if n.parent else len(n.ids),
                chosen=n.id in on_path,
                score=n.score,
                visits=n.visits if with_stats else None,
                value=n.value if with_stats else None,
            )
            for n in self.nodes
        ]


def to_candidate(node: StepNode) -> Candidate:
    """A finished (or budget-cut) path as a candidate solution."""
    text = node.solution_text()
    path = node.path()
    tokens = sum(n.step_tokens for n in path)
    logprob = math.fsum(n.logprob_sum for n in path)
    finished = node.status in (NodeStatus.ANSWERED, NodeStatus.EOS)
    return Candidate(
        text=text,
        answer=extract_answer(text),
        mean_logprob=logprob / tokens if tokens else -math.inf,
        finish_reason="stop" if finished else "length",
        num_tokens=tokens,
        score=node.score if node.score is not None else 0.0,
    )

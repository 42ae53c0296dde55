"""Learned process reward models: Qwen2.5-Math-PRM, Math-Shepherd and RLHFlow.

The clients own the prompt format (`prm_formats`) and the checks; a `PRMBackend`
owns where the model runs (an in-process vLLM engine or a remote `vllm serve`, both
in `server/prm/`). Every `score` call sends all steps of all solutions to the
backend in ONE batched model call, and checks that what comes back lines up with
the steps: a step-tag count that differs from the step count is an error with a
message, never a silent shift of scores onto the wrong steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal, Protocol

from reward_clients.prm_formats import (
    BAD_LABEL,
    GOOD_LABEL,
    QWEN_STEP_TAG,
    SHEPHERD_STEP_TAG,
    good_probability,
    math_shepherd_text,
    positions_of,
    qwen_prm_messages,
    rlhflow_messages,
)
from search_strategies.protocols import ChatMessage
from search_strategies.reward import Aggregation, RewardError, count_reward_tokens

TokenFormat = Literal["math-shepherd", "rlhflow"]


class PRMBackend(Protocol):
    """Where a PRM runs. Failures to reach it raise `RewardUnavailable`."""

    @property
    def description(self) -> str:
        """Where the model is, for error messages ("vLLM in-process: /models/x")."""
        ...

    async def render_chat(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool
    ) -> list[int]:
        """Token ids of `messages` rendered by the model's own chat template."""
        ...

    async def encode(self, text: str, add_special_tokens: bool) -> list[int]: ...

    async def classify_steps(
        self, prompts: Sequence[Sequence[int]], step_tag_id: int
    ) -> list[list[list[float]]]:
        """Token-classification probabilities at each step tag of each prompt."""
        ...

    async def label_logprobs(
        self, prompts: Sequence[Sequence[int]], label_ids: Sequence[int]
    ) -> list[list[float]]:
        """Per prompt, the next-token log-probability of each of `label_ids`."""
        ...

    async def check_health(self) -> None:
        """Raises `RewardUnavailable` when the model cannot answer now (for /health)."""
        ...

    async def close(self) -> None: ...


async def single_token_id(backend: PRMBackend, text: str, what: str) -> int:
    """The id `text` encodes to (its last token, as the model cards take it)."""
    ids = await backend.encode(text, add_special_tokens=False)
    if not ids:
        raise RewardError(f"{backend.description}: the tokenizer has no token for {what} {text!r}")
    return ids[-1]


class QwenPRM:
    """Qwen2.5-Math-PRM (`Qwen2ForProcessRewardModel`): P(right) at every `<extra_0>`."""

    #: Trained on prefixes: the last step's score judges the whole solution (Snell, HF).
    default_aggregation: Aggregation = "last"

    def __init__(self, backend: PRMBackend, name: str = "prm") -> None:
        self.backend = backend
        self._name = name
        self._tag_id: int | None = None

    @property
    def name(self) -> str:
        return self._name

    async def _step_tag_id(self) -> int:
        if self._tag_id is None:
            ids = await self.backend.encode(QWEN_STEP_TAG, add_special_tokens=False)
            if len(ids) != 1:
                raise RewardError(
                    f"{self._name}: {QWEN_STEP_TAG} is not one token in the tokenizer of "
                    f"{self.backend.description} (got {ids}); is this a Qwen2.5-Math-PRM?"
                )
            self._tag_id = ids[0]
        return self._tag_id

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        tag_id = await self._step_tag_id()
        todo = [i for i, steps in enumerate(solutions) if steps]
        prompts = await asyncio.gather(
            *(
                self.backend.render_chat(
                    qwen_prm_messages(question, solutions[i]), add_generation_prompt=False
                )
                for i in todo
            )
        )
        for i, prompt in zip(todo, prompts):
            _check_tag_count(self._name, i, len(solutions[i]), prompt.count(tag_id))
        rows = await self.backend.classify_steps(prompts, tag_id) if prompts else []
        count_reward_tokens(sum(len(p) for p in prompts))
        scores: list[list[float]] = [[] for _ in solutions]
        for i, tag_rows in zip(todo, rows, strict=True):
            if len(tag_rows) != len(solutions[i]):
                raise RewardError(
                    f"{self._name}: solution {i}: {self.backend.description} returned "
                    f"{len(tag_rows)} step scores for {len(solutions[i])} steps; the "
                    f"server's step tag is not {QWEN_STEP_TAG} (id {tag_id}); start it "
                    f"with --pooler-config '{{\"step_tag_id\": {tag_id}}}'"
                )
            scores[i] = [_positive(self._name, i, j, row) for j, row in enumerate(tag_rows)]
        return scores


def _check_tag_count(name: str, solution: int, steps: int, tags: int) -> None:
    if tags != steps:
        raise RewardError(
            f"{name}: solution {solution} has {steps} steps but its PRM input has {tags} "
            "step tags (a step that contains the tag itself, or a tokenizer that splits "
            "it); refusing to shift scores onto the wrong steps"
        )


def _positive(name: str, solution: int, step: int, row: Sequence[float]) -> float:
    if len(row) != 2:
        raise RewardError(
            f"{name}: solution {solution}, step {step}: expected 2 class probabilities, "
            f"got {len(row)}; is this a Qwen2ForProcessRewardModel?"
        )
    return float(row[1])


class TokenLogitPRM:
    """A causal-LM PRM read from its next-token `+`/`-` logits (Math-Shepherd, RLHFlow).

    Every step becomes one prompt that ends where the label would be generated; all
    prompts of all solutions go to the engine in one call (they share prefixes, so
    the prefix cache does most of the prefill), each asking for one token and the
    log-probabilities of exactly the two label tokens.
    """

    #: Trained on prefixes, like the Qwen PRM: the last step's score judges them all.
    default_aggregation: Aggregation = "last"

    def __init__(self, backend: PRMBackend, fmt: TokenFormat, name: str = "prm") -> None:
        if fmt not in ("math-shepherd", "rlhflow"):
            raise ValueError(f"unknown token-logit PRM format {fmt!r}")
        self.backend = backend
        self.format = fmt
        self._name = name
        self._ids: tuple[int, int, int | None] | None = None

    @property
    def name(self) -> str:
        return self._name

    async def _token_ids(self) -> tuple[int, int, int | None]:
        """(good label, bad label, step tag or None), looked up once."""
        if self._ids is None:
            good = await single_token_id(self.backend, GOOD_LABEL, "label")
            bad = await single_token_id(self.backend, BAD_LABEL, "label")
            tag = None
            if self.format == "math-shepherd":
                tag = await single_token_id(self.backend, SHEPHERD_STEP_TAG, "step tag")
            self._ids = (good, bad, tag)
        return self._ids

    async def _step_prompts(
        self, index: int, question: str, steps: Sequence[str], tag: int | None
    ) -> list[list[int]]:
        """One prompt per step, ending where that step's label is predicted."""
        if self.format == "rlhflow":
            return list(
                await asyncio.gather(
                    *(
                        self.backend.render_chat(
                            rlhflow_messages(question, steps, k), add_generation_prompt=True
                        )
                        for k in range(len(steps))
                    )
                )
            )
        assert tag is not None
        ids = await self.backend.encode(math_shepherd_text(question, steps), True)
        tags = positions_of(ids, tag)
        _check_tag_count(self._name, index, len(steps), len(tags))
        # The logits at the tag itself predict the label (causal: later text is unseen).
        return [ids[: position + 1] for position in tags]

    async def score(self, question: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        good, bad, tag = await self._token_ids()
        per_solution = await asyncio.gather(
            *(self._step_prompts(i, question, steps, tag) for i, steps in enumerate(solutions))
        )
        flat = [prompt for prompts in per_solution for prompt in prompts]
        reads = await self.backend.label_logprobs(flat, (good, bad)) if flat else []
        count_reward_tokens(sum(len(p) for p in flat))
        if len(reads) != len(flat):
            raise RewardError(
                f"{self._name}: {self.backend.description} returned {len(reads)} label "
                f"reads for {len(flat)} steps"
            )
        it = iter(reads)
        return [[self._label_score(next(it)) for _ in prompts] for prompts in per_solution]

    def _label_score(self, read: Sequence[float]) -> float:
        if len(read) != 2:
            raise RewardError(f"{self._name}: expected 2 label log-probabilities, got {read!r}")
        return good_probability(float(read[0]), float(read[1]))

"""`auto`: spend a small probe estimating how hard the question is, then hand the rest
of the budget to the search that a policy table says works best for that difficulty
and budget (Snell et al. 2024: revision and best-of-N win on easy questions, PRM-
guided search on hard ones; choosing per question beat best-of-N by about 4x in
compute).

The probe is best-of-`probe.n` short samples scored in one reward call; its feature
(mean reward, or answer agreement) picks the difficulty bin, the bin and the tokens
left pick the strategy (`AutoPolicy.choice_for`), and that strategy runs on the same
budget, so the probe's tokens count in usage and in the budget. What was chosen, and
why, is in the result's `extra["auto"]`. When the probe leaves nothing to spend, the
probe's own pick is the answer.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from search_strategies.auto_policy import AutoChoice, AutoPolicy
from search_strategies.best_of_n import BestOfNParams, best_of_n, vote_shares
from search_strategies.context import SearchContext
from search_strategies.params import StrategyParams
from search_strategies.results import Candidate, SearchResult, TraceNode
from search_strategies.reward import Aggregation

#: Sampling fields a request sets for the whole search (the probe and the choice).
SHARED_FIELDS = ("temperature", "top_p", "seed", "max_new_tokens")


class AutoParams(StrategyParams):
    aggregation: Aggregation = Field(
        "last", description="How step rewards combine, for the probe and the chosen search."
    )
    #: The server's policy table, given as validation context ("auto_policy").
    _policy: AutoPolicy | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _policy_from_the_server(self, info: ValidationInfo) -> AutoParams:
        policy = (info.context or {}).get("auto_policy")
        if policy is None:
            raise ValueError(
                "strategy 'auto' needs a policy table and this server has none "
                "(start it with --auto-policy PATH; `ponder bench fit-auto` makes one)"
            )
        self._policy = policy
        return self

    @property
    def policy(self) -> AutoPolicy:
        if self._policy is None:
            raise ValueError("AutoParams built without validation: no policy table")
        return self._policy

    @property
    def needs_reward(self) -> bool:
        """The probe is scored, and the searches it hands over to are reward-guided."""
        return True


def probe_features(candidates: list[Candidate]) -> dict[str, float]:
    """What the probe's samples say about the question: how much their answers agree
    (the largest vote share), and the mean and spread of their rewards."""
    scores = [c.score for c in candidates]
    return {
        "agreement": max(vote_shares(candidates), default=0.0),
        "mean_reward": statistics.fmean(scores) if scores else 0.0,
        "reward_spread": statistics.pstdev(scores) if len(scores) > 1 else 0.0,
        "answered": sum(c.answer is not None for c in candidates) / max(1, len(candidates)),
    }


async def auto(ctx: SearchContext, params: AutoParams) -> SearchResult:
    policy = params.policy
    probe = await best_of_n(ctx, _probe_params(params))
    features = probe_features(probe.candidates)
    difficulty = policy.bin_of(features[policy.feature])
    decision: dict[str, Any] = {
        "difficulty": difficulty.name,
        "feature": policy.feature,
        "features": features,
        "probe_tokens": ctx.budget.usage.generated_tokens,
    }
    if ctx.budget.exhausted() is not None or not probe.candidates:
        decision["chosen_strategy"] = None
        decision["why"] = "the probe spent the budget: its own pick is the answer"
        probe.extra["auto"] = decision
        return probe
    choice = policy.choice_for(difficulty.name, ctx.budget.remaining_tokens())
    spec, chosen_params = _chosen(choice, params)
    decision.update(
        chosen_strategy=choice.strategy,
        params=chosen_params.model_dump(exclude_defaults=True),
        evidence={
            "max_tokens": choice.max_tokens,
            "accuracy": choice.accuracy,
            "problems": choice.problems,
        },
    )
    probe_nodes = [dataclasses.replace(node, chosen=False) for node in probe.trace or []]
    ctx.budget.wrap_traces(lambda nodes: with_probe(probe_nodes, nodes))
    result = await spec.run(ctx, chosen_params)
    result.trace = with_probe(probe_nodes, result.trace or [])
    if result.chosen is None and probe.chosen is not None:
        result.chosen = probe.chosen  # the search found nothing: the probe's pick stands
        decision["why"] = "the chosen search returned no answer: the probe's pick stands"
    result.extra["auto"] = decision
    return result


def with_probe(probe: list[TraceNode], search: list[TraceNode]) -> list[TraceNode]:
    """One tree: the probe's samples and the chosen search under the same root (the
    prompt), the search's node ids shifted past the probe's."""
    if not probe:
        return search
    offset = max(node.id for node in probe)
    root = next((node for node in search if node.parent is None), None)
    merged = [
        dataclasses.replace(node, chosen=bool(root and root.chosen))
        if node.parent is None
        else node
        for node in probe
    ]
    for node in search:
        if node.parent is None:
            continue
        parent = 0 if node.parent == (root.id if root else 0) else node.parent + offset
        merged.append(dataclasses.replace(node, id=node.id + offset, parent=parent))
    return merged


def _probe_params(params: AutoParams) -> BestOfNParams:
    probe = params.policy.probe
    return BestOfNParams(
        n=probe.n,
        max_new_tokens=min(probe.max_new_tokens, params.max_new_tokens),
        selection="weighted",
        aggregation=params.aggregation,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
    )


def _chosen(choice: AutoChoice, params: AutoParams) -> tuple[Any, StrategyParams]:
    """The registered strategy and its validated params: the table's, with the
    request's own sampling fields and the reward's aggregation on top."""
    from search_strategies.registry import STRATEGIES  # the registry lists `auto` too

    spec = STRATEGIES[choice.strategy]
    fields = dict(choice.params)
    fields.update({k: getattr(params, k) for k in SHARED_FIELDS if k in params.model_fields_set})
    if params.seed is not None:  # reproducible, and not a redraw of the probe's samples
        fields["seed"] = params.seed + 1
    if "aggregation" in spec.params_model.model_fields:
        fields.setdefault("aggregation", params.aggregation)
    return spec, spec.params_model.model_validate(fields)

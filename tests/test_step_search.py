"""Beam search, DVTS, MCTS and revision on a known tree of steps (engine tests: HTTP).

The toy tree has a trap: the first step "A" scores best, but only the "B" branch
leads to the best leaf (\\boxed{7}, reward 1.0). Greedy search falls for the trap;
beam search with enough beams and MCTS with enough simulations do not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from search_strategies.auto import AutoParams, auto
from search_strategies.beam_search import BeamSearchParams, beam_search
from search_strategies.budget import BudgetLimits, StopReason
from search_strategies.dvts import DVTSParams, dvts
from search_strategies.mcts import MCTSParams, mcts
from search_strategies.particle_filtering import ParticleFilteringParams, particle_filtering
from search_strategies.protocols import Generation
from search_strategies.registry import STRATEGIES
from search_strategies.results import SearchResult
from search_strategies.revision import RevisionParams, revision
from tests.fakes import (
    TRAP_REWARDS,
    TRAP_TREE,
    D,
    TableReward,
    TreePolicy,
    char_completion,
    run_search,
)

run = run_search  # the name these tests grew up with


def chosen_path(result) -> list[str]:
    return [node.text for node in result.trace if node.chosen and node.parent is not None]


def test_beam_search_escapes_the_trap_and_batches_every_wave():
    policy, reward = TreePolicy(TRAP_TREE), TableReward(TRAP_REWARDS)
    result = run(beam_search, BeamSearchParams(n=6, beam_width=2, seed=1), policy, reward)
    assert result.answer == "7"
    assert result.stopped_reason is StopReason.COMPLETED
    assert chosen_path(result) == ["B" + D, "B2" + D, "\\boxed{7}"]
    # Round 1: root × 6 in one call; then 3 survivors × 2 per call.
    assert [(prompts, p.n) for prompts, p in policy.calls] == [(1, 6), (3, 2), (3, 2)]
    assert all(p.stop == (D,) for _, p in policy.calls)
    assert result.usage.engine_calls == len(policy.calls)
    assert result.usage.reward_calls == len(reward.calls) == 3


def test_one_beam_falls_for_the_trap():
    """The same search with a single surviving beam is greedy: it follows A."""
    result = run(
        beam_search,
        BeamSearchParams(n=2, beam_width=2),
        TreePolicy(TRAP_TREE),
        TableReward(TRAP_REWARDS),
    )
    assert result.answer in {"1", "2"}


def test_lookahead_scores_candidates_by_their_rollouts():
    """One-step lookahead sees that A's children are poor, so B wins with 1 beam."""
    policy = TreePolicy(TRAP_TREE)
    result = run(
        beam_search,
        BeamSearchParams(n=3, beam_width=3, lookahead=1),
        policy,
        TableReward(TRAP_REWARDS),
    )
    assert chosen_path(result)[0] == "B" + D
    assert any(p.temperature == 0 and p.n == 1 for _, p in policy.calls)


DVTS_TREE = {
    "": ["A" + D, "B" + D, "C" + D, "D" + D],
    **{f"{x}{D}": [f"\\boxed{{{i}}}"] for i, x in enumerate("ABCD", start=1)},
}
DVTS_REWARDS = {"A": 0.9, "B": 0.8, "C": 0.3, "D": 0.2}


def first_steps(result) -> set[str]:
    by_id = {node.id: node for node in result.trace}
    firsts = set()
    for candidate in result.candidates:
        leaf = next(
            n
            for n in result.trace
            if n.text
            and candidate.text.endswith(n.text)
            and n.parent is not None
            and by_id[n.parent].parent is not None
        )
        firsts.add(by_id[leaf.parent].text)
    return firsts


def test_dvts_subtrees_stay_independent_where_beam_search_collapses():
    """Samples 0-1 (A, B) form subtree 0 and samples 2-3 (C, D) subtree 1. Beam search
    keeps the two best first steps overall (A, B: both subtree 0); DVTS keeps the
    best of each subtree (A and C), so subtree 1's line of reasoning survives."""
    params = dict(n=4, beam_width=2)
    beam = run(
        beam_search, BeamSearchParams(**params), TreePolicy(DVTS_TREE), TableReward(DVTS_REWARDS)
    )
    diverse = run(dvts, DVTSParams(**params), TreePolicy(DVTS_TREE), TableReward(DVTS_REWARDS))
    assert first_steps(beam) == {"A" + D, "B" + D}
    assert first_steps(diverse) == {"A" + D, "C" + D}
    assert diverse.answer == "1"


def root_visit_share(result, first_step: str) -> float:
    root = result.trace[0]
    child = [n for n in result.trace if n.parent == 0 and n.text == first_step]
    return sum(n.visits for n in child) / root.visits


@pytest.mark.parametrize("repeat", ["widen", "skip"])
def test_mcts_finds_the_best_leaf_and_concentrates_visits(repeat):
    shares = []
    for simulations in (6, 24, 60):
        policy, reward = TreePolicy(TRAP_TREE), TableReward(TRAP_REWARDS)
        params = MCTSParams(
            simulations=simulations,
            expansion_width=3,
            wave_size=2,
            prior="uniform",
            repeat_selection=repeat,
        )
        result = run(mcts, params, policy, reward)
        shares.append(root_visit_share(result, "B" + D))
        # expansion_width per leaf; `widen` samples a leaf chosen twice 2 x 3 ways
        sampled = {p.n for _, p in policy.calls if p.temperature > 0}  # not the final greedy one
        assert sampled <= ({3} if repeat == "skip" else {3, 6})
    assert result.answer == "7"
    assert chosen_path(result) == ["B" + D, "B2" + D, "\\boxed{7}"]
    assert shares[0] < shares[1] < shares[2] and shares[2] > 0.5
    # Visits are consistent: a node's visits = its own evaluations + its children's.
    by_parent: dict[int, int] = {}
    for node in result.trace[1:]:
        by_parent[node.parent] = by_parent.get(node.parent, 0) + node.visits
    for node in result.trace:
        assert node.visits >= by_parent.get(node.id, 0)


def test_mcts_waves_batch_expansions_into_one_engine_call():
    policy, reward = TreePolicy(TRAP_TREE), TableReward(TRAP_REWARDS)
    result = run(mcts, MCTSParams(simulations=12, expansion_width=2, wave_size=4), policy, reward)
    assert max(prompts for prompts, _ in policy.calls) > 1  # virtual loss spread a wave
    assert result.usage.engine_calls == len(policy.calls) <= 12 // 4 + 1
    assert len(reward.calls) == result.usage.reward_calls


@pytest.mark.parametrize(
    ("rollout", "first_step_values"),
    [
        # With rollout each first step is worth its greedy finish: A -> A1 -> \boxed{1}
        # (0.2), B -> B1 -> \boxed{8} (0.3), C -> C1 -> \boxed{3} (0.1).
        (True, {"A": 0.2, "B": 0.3, "C": 0.1}),
        # Without it, each is worth its own PRM score.
        (False, {"A": 0.6, "B": 0.5, "C": 0.2}),
    ],
)
def test_mcts_rollout_values_a_step_by_its_finished_solution(rollout, first_step_values):
    policy, reward = TreePolicy(TRAP_TREE), TableReward(TRAP_REWARDS)
    result = run(mcts, MCTSParams(simulations=8, rollout=rollout, prior="uniform"), policy, reward)
    scores = {node.text.removesuffix(D): node.score for node in result.trace if node.parent == 0}
    assert scores == first_step_values
    greedy_rollouts = [p for _, p in policy.calls if p.stop == () and p.temperature == 0]
    # Without rollout the only greedy no-stop call is the final completion, if any.
    assert (len(greedy_rollouts) > 1) is rollout
    assert result.answer is not None


REVISION_TREE = {"": ["3 + 4 = 8" + D + "\\boxed{8}"]}


class RevisingPolicy(TreePolicy):
    """First attempts are wrong; a prompt that carries feedback gets a right answer."""

    async def generate(self, prompts, params):
        generations = await super().generate(prompts, params)
        fixed = char_completion("3 + 4 = 7" + D + "\\boxed{7}", params, -0.1)
        out = []
        for prompt, generation in zip(prompts, generations):
            if "verifier" in "".join(chr(i) for i in prompt if i):
                generation = Generation(generation.prompt_tokens, (fixed,) * params.n)
            out.append(generation)
        return out


def test_revision_uses_feedback_and_stops_when_confident():
    policy = RevisingPolicy(REVISION_TREE)
    reward = TableReward({"3 + 4 = 8": 0.0, "3 + 4 = 7": 1.0, "\\boxed{7}": 1.0, "\\boxed{8}": 0.1})
    result = run(revision, RevisionParams(parallel_chains=2, max_revisions=3), policy, reward)
    assert result.answer == "7"
    assert result.stopped_reason is StopReason.COMPLETED
    # Attempt round (one call, n=2), one revision round (2 prompts), then accepted.
    assert [(prompts, p.n) for prompts, p in policy.calls] == [(1, 2), (2, 1)]
    chosen = [n for n in result.trace if n.chosen]
    assert [n.parent for n in chosen] == [None, 0, chosen[1].id][: len(chosen)]
    assert len(result.candidates) == 4


def test_reward_budget_stops_a_search_with_an_answer():
    result = run(
        beam_search,
        BeamSearchParams(n=6, beam_width=2),
        TreePolicy(TRAP_TREE),
        TableReward(TRAP_REWARDS),
        BudgetLimits(max_reward_calls=1),
    )
    assert result.stopped_reason is StopReason.REWARD_BUDGET
    assert result.usage.reward_calls == 1
    assert result.answer is not None  # best partial, completed greedily


class StallingPolicy:
    """Answers its first `fast_calls` engine calls at once, then stalls past any deadline,
    so that what a search has found when its deadline passes is known exactly."""

    def __init__(self, inner, fast_calls: int) -> None:
        self.inner, self.fast_calls, self.calls = inner, fast_calls, 0
        self.model_name = inner.model_name

    async def encode_chat(self, messages):
        return await self.inner.encode_chat(messages)

    async def generate(self, prompts, params):
        self.calls += 1
        if self.calls > self.fast_calls:
            await asyncio.sleep(60)  # cancelled at the deadline
        return await self.inner.generate(prompts, params)


#: The first step may already be a (poor) finished solution, \boxed{3} (0.1).
EARLY_FINISH_TREE = {**TRAP_TREE, "": ["A" + D, "B" + D, "\\boxed{3}"]}
DEADLINE_STRATEGIES = {
    "beam_search": (beam_search, BeamSearchParams, {"n": 4, "beam_width": 2}),
    "dvts": (dvts, DVTSParams, {"n": 4, "beam_width": 2}),
    "mcts": (mcts, MCTSParams, {"simulations": 40, "prior": "uniform"}),
    "particle_filtering": (particle_filtering, ParticleFilteringParams, {"n": 3, "seed": 0}),
}


def run_to_deadline(name: str, policy, **overrides: Any) -> SearchResult:
    strategy, model, base = DEADLINE_STRATEGIES[name]
    result = run(
        strategy,
        model(**base, **overrides),
        policy,
        TableReward(TRAP_REWARDS),
        BudgetLimits(time_limit_s=0.5),
    )
    assert result.stopped_reason is StopReason.DEADLINE
    return result


@pytest.mark.parametrize("name", sorted(DEADLINE_STRATEGIES))
def test_deadline_returns_the_best_complete_solution_found(name):
    """Anytime: when the deadline passes, a search returns the best complete solution
    found so far. Here the first wave finished one, \\boxed{3}, beside better-scored
    partial steps (A 0.6, B 0.5) that there is no time left to complete."""
    result = run_to_deadline(name, StallingPolicy(TreePolicy(EARLY_FINISH_TREE), 1))
    assert result.answer == "3"
    assert result.chosen.text == "\\boxed{3}" and result.chosen.score == 0.1
    assert {c.text for c in result.candidates} == {"\\boxed{3}"}
    assert chosen_path(result) == ["\\boxed{3}"]


@pytest.mark.parametrize("name", sorted(DEADLINE_STRATEGIES))
def test_deadline_returns_what_was_found(name):
    """With nothing finished at the deadline, the result is the best partial solution
    (step A, 0.6), listed among the candidates: partial work, not an empty answer."""
    result = run_to_deadline(name, StallingPolicy(TreePolicy(TRAP_TREE), 1))
    assert result.chosen is not None
    assert (result.chosen.text, result.chosen.score) == ("A" + D, 0.6)
    assert result.chosen.finish_reason == "length"
    assert [(c.text, c.score) for c in result.candidates] == [("A" + D, 0.6)]
    assert chosen_path(result) == ["A" + D]


def test_mcts_deadline_after_the_best_leaf_returns_it():
    """Three waves (one engine call each: `skip` keeps each leaf's expansion width one
    call's `n`) find \\boxed{7}; the deadline cuts the fourth."""
    result = run_to_deadline(
        "mcts", StallingPolicy(TreePolicy(TRAP_TREE), 3), repeat_selection="skip"
    )
    assert result.answer == "7"
    assert chosen_path(result) == ["B" + D, "B2" + D, "\\boxed{7}"]
    assert all(c.answer is not None for c in result.candidates)


def test_revision_deadline_returns_the_attempts_so_far():
    """The deadline cuts the first revision round: the first attempts are the answer."""
    policy = StallingPolicy(RevisingPolicy(REVISION_TREE), 1)
    reward = TableReward({"3 + 4 = 8": 0.0, "\\boxed{8}": 0.1})
    result = run(
        revision,
        RevisionParams(parallel_chains=2, max_revisions=3),
        policy,
        reward,
        BudgetLimits(time_limit_s=0.5),
    )
    assert result.stopped_reason is StopReason.DEADLINE
    assert result.answer == "8" and result.chosen.score == 0.1
    assert len(result.candidates) == 2


def test_progress_is_reported_once_per_wave():
    reports = []
    run(
        beam_search,
        BeamSearchParams(n=6, beam_width=2),
        TreePolicy(TRAP_TREE),
        TableReward(TRAP_REWARDS),
        on_progress=reports.append,
    )
    assert [r.wave for r in reports] == [1, 2, 3]
    assert reports[-1].best_score == 1.0
    assert reports[0].nodes < reports[-1].nodes


STEP_STRATEGIES = {
    "beam_search": (beam_search, BeamSearchParams, {"n": 4, "beam_width": 2}),
    "dvts": (dvts, DVTSParams, {"n": 4, "beam_width": 2}),
    "mcts": (mcts, MCTSParams, {"simulations": 8, "wave_size": 3}),
    "revision": (revision, RevisionParams, {"parallel_chains": 3, "max_revisions": 2}),
    "particle_filtering": (particle_filtering, ParticleFilteringParams, {"n": 4, "seed": 0}),
}


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(STEP_STRATEGIES)),
    max_tokens=st.integers(1, 200),
    max_step_tokens=st.integers(1, 12),
    width=st.integers(1, 4),
)
def test_generated_tokens_never_exceed_the_budget(name, max_tokens, max_step_tokens, width):
    strategy, model, base = STEP_STRATEGIES[name]
    fields = dict(base, max_new_tokens=40)
    if name in ("beam_search", "dvts"):
        fields.update(n=2 * width, beam_width=width, max_step_tokens=max_step_tokens)
    elif name == "mcts":
        fields.update(expansion_width=width, max_step_tokens=max_step_tokens)
    elif name == "particle_filtering":
        fields.update(n=2 * width, max_step_tokens=max_step_tokens)
    policy = RevisingPolicy(TRAP_TREE) if name == "revision" else TreePolicy(TRAP_TREE)
    result = run(
        strategy,
        model(**fields),
        policy,
        TableReward(TRAP_REWARDS),
        BudgetLimits(max_tokens=max_tokens),
    )
    assert result.usage.generated_tokens <= max_tokens
    assert result.stopped_reason in (StopReason.COMPLETED, StopReason.TOKEN_BUDGET)
    if result.usage.generated_tokens == 0:
        assert result.stopped_reason is StopReason.TOKEN_BUDGET
    unlimited = run(strategy, model(**fields), type(policy)(TRAP_TREE), TableReward(TRAP_REWARDS))
    assert unlimited.stopped_reason is StopReason.COMPLETED
    if result.stopped_reason is StopReason.COMPLETED:
        assert result.usage.generated_tokens == unlimited.usage.generated_tokens


def test_every_strategy_is_registered_with_its_parameters():
    assert set(STRATEGIES) == {"best_of_n", "auto", *STEP_STRATEGIES}
    assert STRATEGIES["auto"].run is auto and STRATEGIES["auto"].params_model is AutoParams
    for name, (strategy, model, _) in STEP_STRATEGIES.items():
        assert STRATEGIES[name].run is strategy and STRATEGIES[name].params_model is model
        assert model().needs_reward


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        (BeamSearchParams, {"n": 2, "beam_width": 3}, "beam_width"),
        (MCTSParams, {"simulations": 0}, "simulations"),
        (MCTSParams, {"c_puct": -1}, "c_puct"),
        (RevisionParams, {"context_attempts": 5}, "context_attempts"),
        (DVTSParams, {"max_steps": 0}, "max_steps"),
        (ParticleFilteringParams, {"ess_threshold": 1.5}, "ess_threshold"),
    ],
)
def test_bad_parameters_name_the_field(model, fields, field):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as error:
        model(**fields)
    assert error.value.errors()[0]["loc"] == (field,)


def test_mcts_accepts_max_depth():
    assert MCTSParams(max_depth=3).max_steps == 3

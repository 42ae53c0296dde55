"""Step searches behave as their references do (issue 13; review search-fidelity.md).

Each test pins one defect the review reproduced with fake policies: a step cap shared
by every parent, DVTS stopping on N finished paths, MCTS spending simulations on one
leaf, paths cut off unfinished at `max_steps`, and `n % beam_width` dropping samples.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from search_strategies.beam_search import BeamSearchParams, beam_search
from search_strategies.budget import Budget, BudgetLimits, MeteredPolicy, StopReason
from search_strategies.dvts import DVTSParams, dvts
from search_strategies.mcts import MCTSParams, mcts
from search_strategies.step_tree import StepTree
from tests.fakes import ScriptedPolicy, TableReward, TreePolicy, run_search

D = "\n\n"

# -- 2. each parent's step is capped by its own remaining solution tokens ---------

LONG_FIRST = "B" * 26 + D  # 28 tokens: 12 of a 40-token solution are left
A_STEP = "A" + "a" * 20 + D  # 23 tokens: fits A's own 37 remaining tokens
CAP_TREE = {
    "": ["A" + D, LONG_FIRST],
    "A" + D: [A_STEP],
    "A" + D + A_STEP: ["\\boxed{1}"],
    LONG_FIRST: ["B2" + D],
}


def test_each_parent_step_is_capped_by_its_own_remaining_tokens():
    """B has 12 tokens left and A 37: A's second step must not be cut to 12."""
    policy = TreePolicy(CAP_TREE)
    params = BeamSearchParams(n=2, beam_width=1, max_step_tokens=30, max_new_tokens=40)
    result = run_search(beam_search, params, policy, TableReward({}))
    first_round, *second_round = policy.calls[:3]
    assert first_round[0] == 1  # equal caps: one call
    caps = sorted((prompts, p.max_tokens) for prompts, p in second_round)
    assert caps == [(1, 12), (1, 30)]
    assert A_STEP in [node.text for node in result.trace]
    assert result.answer == "1"


class FailingCapPolicy(TreePolicy):
    """Fails calls capped at `fail_cap` at once and stalls the others (recording
    whether they were cancelled), from the second call on."""

    def __init__(self, tree: dict[str, list[str]], fail_cap: int) -> None:
        super().__init__(tree)
        self.fail_cap = fail_cap
        self.cancelled = 0

    async def generate(self, prompts, params):
        if not self.calls:
            return await super().generate(prompts, params)
        self.calls.append((len(prompts), params))
        if params.max_tokens == self.fail_cap:
            raise RuntimeError("engine failed")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("a call outlived its wave")


def test_a_failed_call_of_a_split_wave_cancels_the_others():
    policy = FailingCapPolicy(CAP_TREE, fail_cap=12)
    params = BeamSearchParams(n=2, beam_width=1, max_step_tokens=30, max_new_tokens=40)
    with pytest.raises(RuntimeError, match="engine failed"):
        run_search(beam_search, params, policy, TableReward({}))
    assert policy.cancelled == 1


# -- 3. DVTS runs until every subtree's own best path has ended --------------------

# Subtree 0 = {A, \boxed{2}}, subtree 1 = {C, \boxed{4}}. Round 2 finishes 3 more
# paths (5 >= N = 4), but subtree 1's best new step, C2, is open and leads to 7.
DVTS_TREE = {
    "": ["A" + D, "\\boxed{2}", "C" + D, "\\boxed{4}"],
    "A" + D: ["\\boxed{5}", "\\boxed{6}"],
    "C" + D: ["\\boxed{3}", "C2" + D],
    "C" + D + "C2" + D: ["\\boxed{7}"],
}
DVTS_REWARDS = {
    "A": 0.6,
    "\\boxed{2}": 0.1,
    "C": 0.5,
    "\\boxed{4}": 0.1,
    "\\boxed{5}": 0.3,
    "\\boxed{6}": 0.2,
    "\\boxed{3}": 0.1,
    "C2": 0.9,
    "\\boxed{7}": 1.0,
}


def test_dvts_runs_until_every_subtree_best_path_has_ended():
    policy = TreePolicy(DVTS_TREE)
    result = run_search(dvts, DVTSParams(n=4, beam_width=2), policy, TableReward(DVTS_REWARDS))
    # Round 3 expands only subtree 1's open best path, C2.
    assert [(prompts, p.n) for prompts, p in policy.calls] == [(1, 4), (2, 2), (1, 2)]
    assert result.answer == "7"
    assert result.stopped_reason is StopReason.COMPLETED


def test_beam_search_still_stops_once_n_paths_have_finished():
    """Moving the stop into the survivor rule leaves beam search's rule as it was."""
    policy = TreePolicy(DVTS_TREE)
    run_search(beam_search, BeamSearchParams(n=4, beam_width=2), policy, TableReward(DVTS_REWARDS))
    assert [(prompts, p.n) for prompts, p in policy.calls] == [(1, 4), (1, 2)]


# -- 4. MCTS: `simulations` expansions, each of a distinct leaf ---------------------


@pytest.mark.parametrize(("simulations", "first_waves"), [(4, [1, 3]), (16, [1, 3, 4])])
def test_mcts_skip_simulations_are_expansions_of_distinct_leaves(simulations, first_waves):
    """A solution that never ends, so every simulation expands an open leaf."""
    policy = ScriptedPolicy(["step" + D])
    params = MCTSParams(
        simulations=simulations,
        wave_size=4,
        expansion_width=3,
        max_steps=64,
        repeat_selection="skip",
    )
    result = run_search(mcts, params, policy, TableReward({}))
    waves = [prompts for prompts, p in policy.calls if p.n == 3]
    assert sum(waves) == simulations
    assert waves[: len(first_waves)] == first_waves  # the root alone, then its children
    assert all(size <= 4 for size in waves)
    children: dict[int, int] = {}
    for node in result.trace[1:]:
        children[node.parent] = children.get(node.parent, 0) + 1
    # No leaf was expanded twice (a duplicate would have 6 children).
    assert sorted(set(children.values()) - {1}) == [3]
    assert sum(1 for count in children.values() if count == 3) == simulations


@pytest.mark.parametrize("simulations", [4, 16])
def test_mcts_widen_fills_the_first_wave_and_still_counts_expansions(simulations):
    """`widen` (the default): the first wave is `wave_size` expansions of the root in
    ONE call, not one; every simulation is still one expansion of `expansion_width`."""
    policy = ScriptedPolicy(["step" + D])
    params = MCTSParams(simulations=simulations, wave_size=4, expansion_width=3, max_steps=64)
    result = run_search(mcts, params, policy, TableReward({}))
    expansions = [(prompts, p.n // 3) for prompts, p in policy.calls if p.n % 3 == 0]
    assert expansions[0] == (1, 4)  # the root, sampled 4 x 3 ways in one call
    assert sum(prompts * copies for prompts, copies in expansions) == simulations
    children: dict[int, int] = {}
    for node in result.trace[1:]:
        children[node.parent] = children.get(node.parent, 0) + 1
    assert children[0] == 12
    expanded = [count for count in children.values() if count != 1]  # 1: the final completion
    assert all(count % 3 == 0 for count in expanded)
    assert sum(count // 3 for count in expanded) == simulations


# -- 5. the step that reaches max_steps runs to the end of the solution --------------

# Every solution takes three steps, of uneven lengths (so step caps differ too).
THREE_STEPS = {
    "": ["A" + D, "Bbbbbb" + D],
    "A" + D: ["A1" + D, "A22222" + D],
    "Bbbbbb" + D: ["B1" + D],
    "A" + D + "A1" + D: ["\\boxed{1}"],
    "A" + D + "A22222" + D: ["\\boxed{2}"],
    "Bbbbbb" + D + "B1" + D: ["\\boxed{7}"],
}
THREE_STEP_REWARDS = {
    "A": 0.6,
    "Bbbbbb": 0.5,
    "A1": 0.3,
    "A22222": 0.25,
    "B1": 0.8,
    "\\boxed{1}": 0.2,
    "\\boxed{2}": 0.2,
    "\\boxed{7}": 1.0,
}
LAST_STEP_CASES = {
    "beam_search": (beam_search, BeamSearchParams(n=4, beam_width=2, max_steps=2)),
    "dvts": (dvts, DVTSParams(n=4, beam_width=2, max_steps=2)),
    "mcts": (mcts, MCTSParams(simulations=8, wave_size=2, max_steps=2, prior="uniform")),
}


@pytest.mark.parametrize("name", sorted(LAST_STEP_CASES))
def test_the_last_step_runs_to_the_end_of_the_solution(name):
    """Solutions take three steps here and `max_steps` is 2: the second step must
    carry on to the boxed answer rather than end the path half-written."""
    strategy, params = LAST_STEP_CASES[name]
    policy = TreePolicy(THREE_STEPS)
    result = run_search(strategy, params, policy, TableReward(THREE_STEP_REWARDS))
    last_steps = [p for _, p in policy.calls if p.stop == () and p.temperature > 0]
    assert last_steps
    # Up to the solution's remaining tokens: 512 minus the first step's 3 or 8.
    assert {p.max_tokens for p in last_steps} <= {512 - 3, 512 - 8}
    assert result.candidates
    assert all(c.finish_reason == "stop" and c.answer for c in result.candidates)
    assert max(len(c.text.split(D)) for c in result.candidates) == 3


# -- 8. beam_width must divide n -------------------------------------------------------


@pytest.mark.parametrize("model", [BeamSearchParams, DVTSParams])
@pytest.mark.parametrize(
    ("fields", "n", "width"), [({"n": 8, "beam_width": 3}, 8, 3), ({"n": 6}, 6, 4)]
)
def test_beam_width_must_divide_n(model, fields, n, width):
    with pytest.raises(ValidationError) as error:
        model(**fields)
    (problem,) = error.value.errors()
    assert problem["loc"] == ("beam_width",)
    assert f"n={n}" in problem["msg"] and f"beam_width={width}" in problem["msg"]


def test_an_uneven_beam_width_is_a_400_naming_both_fields():
    """The server answers a params `ValidationError` with `InvalidRequest` (400)."""
    from server.errors import InvalidRequest

    with pytest.raises(ValidationError) as error:
        DVTSParams.model_validate({"n": 8, "beam_width": 3})
    invalid = InvalidRequest.from_validation(error.value)
    assert invalid.param == "beam_width"
    assert "n=8" in invalid.message and "beam_width=3" in invalid.message


def test_beam_widths_that_divide_n_are_accepted():
    assert DVTSParams(n=8, beam_width=2).beam_width == 2
    assert BeamSearchParams().n % BeamSearchParams().beam_width == 0


# -- the budget stays exact with last steps and per-parent caps ----------------------

BUDGET_CASES = {
    "beam_search": (beam_search, BeamSearchParams, {"n": 4, "beam_width": 2}),
    "dvts": (dvts, DVTSParams, {"n": 4, "beam_width": 2}),
    "mcts": (mcts, MCTSParams, {"simulations": 8, "wave_size": 3}),
}


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(sorted(BUDGET_CASES)),
    max_tokens=st.integers(1, 120),
    max_new_tokens=st.integers(4, 20),
    max_step_tokens=st.integers(1, 8),
    max_steps=st.integers(1, 3),
)
def test_budget_is_exact_with_last_steps_and_uneven_caps(
    name, max_tokens, max_new_tokens, max_step_tokens, max_steps
):
    strategy, model, base = BUDGET_CASES[name]
    params = model(
        **base, max_new_tokens=max_new_tokens, max_step_tokens=max_step_tokens, max_steps=max_steps
    )
    reward = TableReward(THREE_STEP_REWARDS)
    limited = run_search(
        strategy, params, TreePolicy(THREE_STEPS), reward, BudgetLimits(max_tokens=max_tokens)
    )
    assert limited.usage.generated_tokens <= max_tokens
    unlimited = run_search(strategy, params, TreePolicy(THREE_STEPS), reward)
    assert unlimited.stopped_reason is StopReason.COMPLETED
    if limited.stopped_reason is StopReason.COMPLETED:
        assert limited.usage.generated_tokens == unlimited.usage.generated_tokens


# -- 13. expand: children aligned with the parents listed, copies sampled apart --------

FAN_TREE = {
    "": ["A" + D, "B" + D, "Z"],  # Z ends its solution
    "A" + D: [f"A{i}" + D for i in range(4)],
    "B" + D: ["B0" + D],
}


def expand(policy, parents_of, width: int, limits: BudgetLimits = BudgetLimits()):
    """The root's three first steps, then one `expand` over `parents_of(first steps)`
    with a seeded request: per parent entry, its children's texts."""

    async def go():
        budget = Budget(limits)
        metered = MeteredPolicy(policy, budget)
        params = BeamSearchParams(seed=7, max_step_tokens=4)
        tree = StepTree(await metered.encode_chat([]), params.step_config())
        (first,) = await tree.expand(metered, budget, [tree.root], 3, params)
        children = await tree.expand(metered, budget, parents_of(first), width, params)
        return [[child.text.removesuffix(D) for child in kids] for kids in children]

    return asyncio.run(go())


def test_a_repeated_parent_gets_distinct_children_for_each_copy():
    """A listed three times (a particle resampled three ways) is ONE prompt sampled
    3 × width ways: each copy gets its own samples, not the same seeded draw."""
    policy = TreePolicy(FAN_TREE)
    children = expand(policy, lambda first: [first[0]] * 2, 2)
    assert children == [["A0", "A1"], ["A2", "A3"]]
    assert [(prompts, p.n, p.seed) for prompts, p in policy.calls[1:]] == [(1, 4, 7)]


def test_expanded_children_align_with_every_entry():
    """A terminal entry gets no children, the same parent may come back later in the
    list, and entries keep their order; copy counts (1 or 2) group the calls."""
    policy = TreePolicy(FAN_TREE)
    children = expand(policy, lambda first: [first[1], first[2], first[0], first[1]], 1)
    assert children == [["B0"], [], ["A0"], ["B0"]]  # B has a single option
    assert sorted((prompts, p.n) for prompts, p in policy.calls[1:]) == [(1, 1), (1, 2)]


def test_entries_the_budget_drops_get_no_children():
    """After the first steps (7 tokens), room for two 4-token steps: the first two
    entries, in priority order; A's second copy is dropped."""
    policy = TreePolicy(FAN_TREE)
    children = expand(
        policy, lambda first: [first[0], first[1], first[0]], 1, BudgetLimits(max_tokens=7 + 2 * 4)
    )
    assert children == [["A0"], ["B0"], []]

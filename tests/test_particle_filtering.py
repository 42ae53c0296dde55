"""Particle filtering on the known trap tree (engine tests: test_step_search_http.py).

`TreePolicy` gives a node's i-th sample its i-th option, so the B branch's best
child B2 appears only when one B node carries two particles: the tests say which
runs resampled that way.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

import search_strategies.particle_filtering as pf_module
from search_strategies.budget import BudgetLimits, StopReason
from search_strategies.params import ServerLimits
from search_strategies.particle_filtering import (
    ParticleFilteringParams,
    effective_sample_size,
    needs_resampling,
    normalized,
    particle_filtering,
    resample_indices,
    score_logit,
    systematic_indices,
)
from search_strategies.results import SearchResult
from tests.fakes import TRAP_REWARDS, TRAP_TREE, D, TableReward, TreePolicy, run_search


def run_pf(
    tree=TRAP_TREE, rewards=TRAP_REWARDS, limits=BudgetLimits(), reports=None, policy=None, **fields
) -> SearchResult:
    return run_search(
        particle_filtering,
        ParticleFilteringParams(**fields),
        policy or TreePolicy(tree),
        TableReward(rewards),
        limits,
        on_progress=None if reports is None else reports.append,
    )


def chosen_path(result: SearchResult) -> list[str]:
    return [n.text for n in result.trace if n.chosen and n.parent is not None]


def children_of(result: SearchResult, text: str) -> int:
    """Most children any node with this step text got (= particles it carried)."""
    return max(
        sum(1 for c in result.trace if c.parent == n.id) for n in result.trace if n.text == text
    )


# -- the search ---------------------------------------------------------------------


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
@pytest.mark.parametrize("seed", range(4))
def test_particles_leave_the_trap_for_the_high_reward_branch(resampling, seed):
    """A scores best at step 1 (and holds the most weight then), but B's steps score
    better after it: the weights follow B, where one particle alone (greedy) stays
    in A's trap."""
    result = run_pf(n=8, seed=seed, resampling=resampling)
    first = {n.text: n.weight for n in result.trace if n.parent == 0}
    assert first["A" + D] > first["B" + D]
    assert chosen_path(result)[0] == "B" + D
    assert result.answer == "8" and result.stopped_reason is StopReason.COMPLETED
    assert run_pf(n=1, seed=seed, resampling=resampling).answer == "1"


def test_resampling_every_wave_finds_the_best_leaf():
    """its_hub's setting: a B node drawn twice samples B2 too, whose 0.8 then draws
    the population to \\boxed{7}."""
    result = run_pf(
        n=6, seed=0, resampling="multinomial", ess_threshold=1.0, weight_temperature=2.0
    )
    assert children_of(result, "B" + D) == 2
    assert result.answer == "7"
    assert chosen_path(result) == ["B" + D, "B2" + D, "\\boxed{7}"]
    # B2 drew most particles (each its own \boxed{7} node): they hold all the mass.
    assert sum(n.weight for n in result.trace if n.text == "\\boxed{7}") > 0.99


def lineage(result: SearchResult) -> list[tuple]:
    return [(n.id, n.parent, n.text, n.weight) for n in result.trace]


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_resampling_is_deterministic_for_a_seed_and_differs_between_seeds(resampling):
    fields = dict(n=6, resampling=resampling, ess_threshold=1.0)
    runs = {seed: lineage(run_pf(seed=seed, **fields)) for seed in range(8)}
    assert all(lineage(run_pf(seed=seed, **fields)) == runs[seed] for seed in (0, 5))
    assert len({tuple(r) for r in runs.values()}) > 1


def test_an_unseeded_request_draws_from_a_fresh_rng(monkeypatch):
    seeds, fresh = [], random.Random
    monkeypatch.setattr(pf_module.random, "Random", lambda s=None: seeds.append(s) or fresh(s))
    run_pf(n=4)
    run_pf(n=4, seed=9)
    assert seeds == [None, 9]


def count_resamplings(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = pf_module.resample_indices

    def counting(weights, how, rng):
        calls.append(len(weights))
        return original(weights, how, rng)

    monkeypatch.setattr(pf_module, "resample_indices", counting)
    return calls


@pytest.mark.parametrize(("threshold", "resamples_every_wave"), [(0.0, False), (1.0, True)])
def test_ess_threshold_zero_never_resamples_and_one_always_does(
    monkeypatch, threshold, resamples_every_wave
):
    calls = count_resamplings(monkeypatch)
    reports = []
    result = run_pf(n=6, seed=1, ess_threshold=threshold, reports=reports)
    # Every weighed wave but the last (all finished) may resample.
    assert len(calls) == (len(reports) - 1 if resamples_every_wave else 0)
    if not resamples_every_wave:
        # N independent paths: every step node has at most one child.
        assert all(children_of(result, n.text) <= 1 for n in result.trace[1:])


def test_the_population_keeps_its_size_through_resampling():
    """All paths end at depth 3: each wave samples exactly one step per particle."""
    for resampling in ("systematic", "multinomial"):
        reports = []
        run_pf(n=7, seed=3, resampling=resampling, ess_threshold=1.0, reports=reports)
        assert [r.nodes for r in reports] == [7, 14, 21]


# A finished first step (0.9) beside a branch that needs one more step.
EARLY_TREE = {"": ["\\boxed{5}", "A" + D], "A" + D: ["\\boxed{4}"]}
EARLY_REWARDS = {"\\boxed{5}": 0.9, "A": 0.5, "\\boxed{4}": 0.2}


def test_finished_particles_stay_in_the_population_unchanged():
    policy = TreePolicy(EARLY_TREE)
    result = run_pf(policy=policy, rewards=EARLY_REWARDS, n=4, seed=0, ess_threshold=0.0)
    finished = [n for n in result.trace if n.text == "\\boxed{5}"]
    assert len(finished) == 2
    # Never expanded, yet weighed again in the last wave: 0.9 of the mass after
    # wave 1, more once the A paths end on 0.2.
    assert not [n for n in result.trace if n.parent in {f.id for f in finished}]
    assert all(n.weight > 0.45 for n in finished)
    assert sum(n.weight for n in finished) > 0.99
    assert [(prompts, p.n) for prompts, p in policy.calls] == [(1, 4), (2, 1)]
    assert result.answer == "5"
    assert {c.answer for c in result.candidates} == {"5", "4"}


def test_each_wave_is_one_reward_call_and_one_engine_call_per_sampling():
    """Without resampling every wave is ONE engine call; with it, a node carrying k
    particles is sampled k ways, so a wave makes one call per distinct k (never two
    calls with the same sampling)."""
    for threshold in (0.0, 1.0):
        policy, reports = TreePolicy(TRAP_TREE), []
        result = run_pf(
            policy=policy,
            reports=reports,
            n=8,
            seed=2,
            resampling="multinomial",
            ess_threshold=threshold,
        )
        assert result.usage.reward_calls == len(reports) == 3
        calls = [r.usage.engine_calls for r in reports]
        per_wave = [b - a for a, b in zip([0] + calls, calls)]
        start = 0
        for count in per_wave:
            wave = [p for _, p in policy.calls[start : start + count]]
            assert len(set(wave)) == count
            start += count
        if threshold == 0.0:
            assert per_wave == [1, 1, 1]


def test_lineage_and_weights_are_in_the_trace():
    result = run_pf(n=6, seed=0, resampling="multinomial", ess_threshold=1.0)
    assert result.trace[0].weight is None
    assert all(n.weight is not None and 0 <= n.weight <= 1 for n in result.trace[1:])
    # A node drawn k times got k children in the next wave.
    assert max(children_of(result, n.text) for n in result.trace[1:]) >= 2
    # The last wave's nodes (every path ends at step 3) hold the whole population.
    by_id = {n.id: n for n in result.trace}
    last = [
        n
        for n in result.trace
        if n.parent is not None
        and by_id[n.parent].parent is not None
        and by_id[by_id[n.parent].parent].parent == 0
    ]
    assert sum(n.weight for n in last) == pytest.approx(1.0)


def test_the_budget_ending_first_completes_the_heaviest_partial_path():
    """Room for the first wave only: nothing finished, so the heaviest step (A) is
    completed greedily with the tokens left."""
    result = run_pf(n=3, seed=0, max_step_tokens=3, limits=BudgetLimits(max_tokens=11))
    assert result.stopped_reason is StopReason.TOKEN_BUDGET
    assert result.usage.generated_tokens == 11
    assert chosen_path(result)[0] == "A" + D


# -- the budget is exact ---------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 6),
    max_tokens=st.integers(1, 150),
    max_new_tokens=st.integers(4, 30),
    max_step_tokens=st.integers(1, 8),
    max_steps=st.integers(1, 3),
    resampling=st.sampled_from(["systematic", "multinomial"]),
    ess_threshold=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_generated_tokens_never_exceed_the_budget(
    n, max_tokens, max_new_tokens, max_step_tokens, max_steps, resampling, ess_threshold
):
    fields = dict(
        n=n,
        seed=0,
        max_new_tokens=max_new_tokens,
        max_step_tokens=max_step_tokens,
        max_steps=max_steps,
        resampling=resampling,
        ess_threshold=ess_threshold,
    )
    limited = run_pf(limits=BudgetLimits(max_tokens=max_tokens), **fields)
    assert limited.usage.generated_tokens <= max_tokens
    assert limited.stopped_reason in (StopReason.COMPLETED, StopReason.TOKEN_BUDGET)
    unlimited = run_pf(**fields)
    assert unlimited.stopped_reason is StopReason.COMPLETED
    if limited.stopped_reason is StopReason.COMPLETED:
        assert limited.usage.generated_tokens == unlimited.usage.generated_tokens


# -- weights and resampling ---------------------------------------------------------


def test_weights_are_a_softmax_of_score_logits():
    assert score_logit(0.5) == 0.0 and score_logit(None) == 0.0
    assert score_logit(1.0) == pytest.approx(-score_logit(0.0))
    assert score_logit(1.0) > 16
    assert normalized([0.0, 0.0]) == [0.5, 0.5]
    assert normalized([1000.0, 0.0])[0] == pytest.approx(1.0)
    assert effective_sample_size([0.25] * 4) == pytest.approx(4)
    assert effective_sample_size([1.0, 0.0]) == 1
    assert needs_resampling([0.25] * 4, 1.0) and not needs_resampling([1.0, 0.0], 0.0)


def test_systematic_resampling_spreads_pointers_evenly():
    assert systematic_indices([0.5, 0.25, 0.25], 0.0) == [0, 0, 1]
    assert systematic_indices([0.5, 0.25, 0.25], 0.99) == [0, 1, 2]
    assert systematic_indices([0.0, 1.0, 0.0], 0.5) == [1, 1, 1]


@settings(max_examples=100, deadline=None)
@given(
    raw=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).filter(lambda w: sum(w) > 0),
    how=st.sampled_from(["systematic", "multinomial"]),
    seed=st.integers(0, 2**32),
)
def test_both_resamplings_keep_the_population_size(raw, how, seed):
    weights = [w / sum(raw) for w in raw]
    indices = resample_indices(weights, how, random.Random(seed))
    assert len(indices) == len(weights)
    assert all(weights[i] > 0 for i in indices)
    if how == "systematic":  # floor(n·w) or ceil(n·w) copies each
        for i, w in enumerate(weights):
            assert abs(indices.count(i) - len(weights) * w) < 1 + 1e-9


# -- parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ess_threshold": 1.5}, "ess_threshold"),
        ({"ess_threshold": -0.1}, "ess_threshold"),
        ({"weight_temperature": 0}, "weight_temperature"),
        ({"resampling": "stratified"}, "resampling"),
        ({"n": 0}, "n"),
        ({"n": 65}, "n"),
        ({"max_steps": 100}, "max_steps"),
    ],
)
def test_bad_parameters_are_400s_naming_the_field(fields, field):
    from server.errors import InvalidRequest

    with pytest.raises(ValidationError) as error:
        ParticleFilteringParams.model_validate(fields, context={"limits": ServerLimits()})
    assert InvalidRequest.from_validation(error.value).param == field


def test_defaults_and_the_sampling_temperature_stay_apart():
    params = ParticleFilteringParams(temperature=0.3)
    assert (params.n, params.weight_temperature, params.resampling, params.ess_threshold) == (
        8,
        1.0,
        "systematic",
        0.5,
    )
    assert params.temperature == 0.3 and params.needs_reward

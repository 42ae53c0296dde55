"""The `auto` strategy's logic on scripted policies, its policy table, `fit-auto` and
loading a table at startup (over HTTP on the real engine: test_solve_stream.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from clients.bench.fit_auto import FitError, fit
from search_strategies.auto import AutoParams, auto, with_probe
from search_strategies.auto_policy import AutoPolicy
from search_strategies.budget import BudgetLimits, StopReason
from search_strategies.results import TraceNode
from server.auto_policy import AutoPolicyError, load_auto_policy
from server.settings import Settings
from tests.fakes import TRAP_TREE, TableReward, TreePolicy, run_search

TABLE = {
    "model": "tree",
    "reward": "table",
    "probe": {"n": 2, "max_new_tokens": 64},
    "bins": [{"name": "hard", "upper": 0.5}, {"name": "easy", "upper": 1.0}],
    "choices": {
        "hard": [
            {
                "max_tokens": 32,
                "strategy": "beam_search",
                "params": {"n": 4, "beam_width": 2, "max_step_tokens": 20},
                "accuracy": 0.3,
                "problems": 10,
            }
        ],
        "easy": [
            {
                "max_tokens": 32,
                "strategy": "best_of_n",
                "params": {"n": 3, "selection": "weighted"},
                "accuracy": 0.9,
                "problems": 12,
            }
        ],
    },
}


def params(table: dict = TABLE, **fields) -> AutoParams:
    return AutoParams.model_validate(fields, context={"auto_policy": AutoPolicy(**table)})


def solve(default_reward: float, limits: BudgetLimits = BudgetLimits(), **fields):
    """Auto on the trap tree; every final step scores `default_reward` (easy if high)."""
    reward = TableReward({}, default=default_reward)
    return run_search(auto, params(**fields), TreePolicy(TRAP_TREE), reward, limits)


def test_an_easy_question_goes_to_the_easy_choice_and_a_hard_one_to_the_hard() -> None:
    easy = solve(0.9).extra["auto"]
    assert (easy["difficulty"], easy["chosen_strategy"]) == ("easy", "best_of_n")
    assert easy["features"]["mean_reward"] == pytest.approx(0.9)
    assert easy["evidence"] == {"max_tokens": 32, "accuracy": 0.9, "problems": 12}
    hard = solve(0.1).extra["auto"]
    assert (hard["difficulty"], hard["chosen_strategy"]) == ("hard", "beam_search")
    assert hard["params"]["beam_width"] == 2


def test_the_probe_is_charged_to_the_budget_and_shown_in_the_tree() -> None:
    result = solve(0.1)
    decision = result.extra["auto"]
    assert 0 < decision["probe_tokens"] < result.usage.generated_tokens
    probe_leaves = [n for n in result.trace if n.parent == 0 and n.id <= 2]
    assert len(probe_leaves) == 2 and not any(n.chosen for n in probe_leaves)
    ids = [n.id for n in result.trace]
    assert len(ids) == len(set(ids))
    assert any(n.chosen and n.id > 2 for n in result.trace)  # the search's chosen path


def test_a_budget_the_probe_spends_answers_from_the_probe() -> None:
    result = solve(0.9, BudgetLimits(max_tokens=10))
    decision = result.extra["auto"]
    assert decision["chosen_strategy"] is None and "probe" in decision["why"]
    assert result.usage.generated_tokens == 10
    assert result.stopped_reason is StopReason.TOKEN_BUDGET


def test_the_choice_runs_on_what_the_probe_left() -> None:
    limits = BudgetLimits(max_tokens=60)
    result = solve(0.1, limits)
    assert result.usage.generated_tokens <= 60
    assert result.extra["auto"]["chosen_strategy"] == "beam_search"


def test_a_seeded_choice_does_not_redraw_the_probe() -> None:
    decision = solve(0.9, seed=5).extra["auto"]
    assert decision["params"]["seed"] == 6


def test_auto_without_a_table_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValidationError, match="--auto-policy"):
        AutoParams.model_validate({})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"bins": [{"name": "a", "upper": 0.8}, {"name": "b", "upper": 0.2}]}, "must increase"),
        ({"choices": {"hard": TABLE["choices"]["hard"]}}, "no choice for bin(s) ['easy']"),
        ({"choices": {**TABLE["choices"], "odd": TABLE["choices"]["hard"]}}, "are not bins"),
        ({"format": "other/1"}, "ponder-auto-policy/1"),
    ],
)
def test_a_malformed_table_says_what_is_wrong(change: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        AutoPolicy(**{**TABLE, **change})


def test_choice_for_takes_the_largest_budget_that_fits() -> None:
    table = AutoPolicy(
        **{
            **TABLE,
            "choices": {
                "hard": TABLE["choices"]["hard"],
                "easy": [
                    {**TABLE["choices"]["easy"][0], "max_tokens": 100},
                    {**TABLE["choices"]["hard"][0], "max_tokens": 400},
                ],
            },
        }
    )
    assert table.choice_for("easy", 500).strategy == "beam_search"
    assert table.choice_for("easy", 399).strategy == "best_of_n"
    assert table.choice_for("easy", 50).strategy == "best_of_n"  # none fits: the smallest
    assert table.choice_for("easy", None).strategy == "beam_search"
    assert table.bin_of(0.5).name == "hard" and table.bin_of(0.51).name == "easy"
    assert table.bin_of(7.0).name == "easy"


def test_with_probe_puts_both_searches_under_one_root() -> None:
    probe = [TraceNode(0, None, "", 9), TraceNode(1, 0, "p1", 3), TraceNode(2, 0, "p2", 3)]
    search = [
        TraceNode(0, None, "", 9, chosen=True),
        TraceNode(1, 0, "s1", 4, chosen=True),
        TraceNode(2, 1, "s2", 4, chosen=True),
    ]
    merged = with_probe(probe, search)
    assert [(n.id, n.parent, n.text) for n in merged] == [
        (0, None, ""),
        (1, 0, "p1"),
        (2, 0, "p2"),
        (3, 0, "s1"),
        (4, 3, "s2"),
    ]
    assert [n.chosen for n in merged] == [True, False, False, True, True]


# -- fit-auto ---------------------------------------------------------------------------


def _row(problem: str, label: str, setting: str, correct: bool, **extra) -> dict:
    return {
        "problem_id": problem,
        "dataset": "arithmetic",
        "label": label,
        "strategy": label.split("/")[0],
        "setting": setting,
        "correct": correct,
        "model": "m",
        "reward": "arithmetic",
        "params": extra.pop("params", {}),
        "budget": extra.pop("budget", {}),
        "usage": {"generated_tokens": extra.pop("tokens", 100)},
        **extra,
    }


def test_fit_auto_gives_the_table_computed_by_hand(tmp_path: Path) -> None:
    """Four problems: two whose probe samples score high (easy), two low (hard). Beam
    search at 128 tokens gets the hard ones right and the easy ones wrong; best-of-1 the
    reverse; so the table sends easy to best-of-N and hard to beam search (from the
    budget it ran at: 128 tokens)."""
    rows = []
    for problem, score in (("e1", 1.0), ("e2", 0.8), ("h1", 0.2), ("h2", 0.0)):
        easy = problem.startswith("e")
        samples = [{"answer": "1", "score": score, "correct": easy}] * 2
        rows.append(
            _row(
                problem,
                "best_of_n/weighted",
                "n=1",
                easy,
                samples=samples,
                subsampled_from=2,
                params={"n": 2, "selection": "weighted", "max_new_tokens": 96},
                tokens=90,
            )
        )
        rows.append(
            _row(
                problem,
                "beam_search",
                "budget.max_tokens=128",
                not easy,
                params={"n": 4, "beam_width": 2},
                budget={"max_tokens": 128},
                tokens=120,
            )
        )
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = fit([results], probe_n=2, bins=2)
    assert (table.model, table.reward, table.feature) == ("m", "arithmetic", "mean_reward")
    assert table.probe.model_dump() == {"n": 2, "max_new_tokens": 96}
    assert [(b.name, b.upper) for b in table.bins] == [("hard", 0.2), ("easy", 1.0)]
    # Hard: up to 128 tokens only best-of-1 fits (0 right); from 128 beam search.
    cheap, hard = table.choices["hard"]
    assert (cheap.strategy, cheap.max_tokens, cheap.accuracy) == ("best_of_n", 90, 0.0)
    assert (hard.strategy, hard.max_tokens, hard.accuracy, hard.problems) == (
        "beam_search",
        128,
        1.0,
        2,
    )
    assert hard.params == {"n": 4, "beam_width": 2}
    (easy,) = table.choices["easy"]
    assert (easy.strategy, easy.max_tokens, easy.accuracy) == ("best_of_n", 90, 1.0)
    assert easy.params == {"n": 1, "selection": "weighted", "max_new_tokens": 96}


def test_fit_auto_needs_best_of_n_samples(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(_row("p", "beam_search", "x", True)) + "\n")
    with pytest.raises(FitError, match="best_of_n"):
        fit([results])


# -- loading a table at startup ---------------------------------------------------------


def write(tmp_path: Path, table: dict) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(table))
    return path


def test_a_table_for_this_model_loads(tmp_path: Path) -> None:
    table = {**TABLE, "model": "smollm2-135m-instruct"}
    loaded = load_auto_policy(Settings(auto_policy=write(tmp_path, table)))
    assert loaded is not None and loaded.bins[0].name == "hard"


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({**TABLE}, "fitted for model 'tree'"),
        ({**TABLE, "model": "smollm2-135m-instruct", "bins": []}, "not a valid policy table"),
        (
            {
                **TABLE,
                "model": "smollm2-135m-instruct",
                "choices": {
                    **TABLE["choices"],
                    "hard": [{**TABLE["choices"]["hard"][0], "strategy": "telepathy"}],
                },
            },
            "choices.hard[0]: strategy 'telepathy' is not one of",
        ),
        (
            {
                **TABLE,
                "model": "smollm2-135m-instruct",
                "choices": {
                    **TABLE["choices"],
                    "easy": [{**TABLE["choices"]["easy"][0], "params": {"n": 10**6}}],
                },
            },
            "choices.easy[0]: parameters refused",
        ),
    ],
)
def test_a_table_the_server_cannot_use_fails_at_startup(
    tmp_path: Path, table: dict, words: str
) -> None:
    with pytest.raises(AutoPolicyError, match=re.escape(words)):
        load_auto_policy(Settings(auto_policy=write(tmp_path, table)))


def test_the_packaged_table_serves_the_embedded_model_only() -> None:
    packaged = load_auto_policy(Settings())
    assert packaged is not None and packaged.model == "smollm2-135m-instruct"
    assert load_auto_policy(Settings(served_model_name="another-model")) is None
    with pytest.raises(AutoPolicyError, match="cannot read"):
        load_auto_policy(Settings(auto_policy=Path("/nonexistent/policy.json")))

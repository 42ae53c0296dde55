"""`ponder bench` grid: run specs from flags and TOML expand into request shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.bench.grid import expand, load_grid_file, parse_params, parse_run, subsample_sizes


def test_a_best_of_n_run_is_sent_once_and_reported_at_every_power_of_two() -> None:
    (cell,) = expand([parse_run("best_of_n n=16 selection=weighted")])
    assert cell.subsample == (1, 2, 4, 8, 16)
    lines = {(line.label, line.setting) for line in cell.lines()}
    assert len(lines) == 15
    assert ("best_of_n/max_reward", "n=4") in lines and ("best_of_n/majority", "n=16") in lines
    (majority_only,) = expand([parse_run("best_of_n n=4")])
    assert {line.label for line in majority_only.lines()} == {"best_of_n/majority"}


def test_any_strategy_and_parameter_can_be_swept_with_budgets() -> None:
    cells = expand(
        [parse_run("mcts simulations=8,16 c_puct=1.5 budget.max_tokens=512,1024")],
        parse_params(["max_new_tokens=64", "temperature=0.7"]),
    )
    assert len(cells) == 4
    assert {c.setting for c in cells} == {
        "simulations=8,budget.max_tokens=512",
        "simulations=8,budget.max_tokens=1024",
        "simulations=16,budget.max_tokens=512",
        "simulations=16,budget.max_tokens=1024",
    }
    body = cells[0].request("What is 2+2?", "p1")
    assert body["strategy"] == "mcts" and body["c_puct"] == 1.5 and body["max_new_tokens"] == 64
    assert body["budget"] == {"max_tokens": 512} and body["temperature"] == 0.7
    assert len({c.key for c in cells}) == 4


def test_swept_n_or_a_token_budget_sends_best_of_n_directly() -> None:
    cells = expand([parse_run("best_of_n n=1,4 selection=majority,weighted")])
    assert all(not c.subsample for c in cells)
    assert {(c.label, c.setting) for c in cells} == {
        ("best_of_n/majority", "n=1"),
        ("best_of_n/majority", "n=4"),
        ("best_of_n/weighted", "n=1"),
        ("best_of_n/weighted", "n=4"),
    }
    (capped,) = expand([parse_run("best_of_n n=8 budget.max_tokens=300")])
    assert capped.subsample == ()


def test_seed_is_a_per_problem_base_and_none_sends_no_seed() -> None:
    (cell,) = expand([parse_run("best_of_n n=2")])
    first, again, other = (cell.request("q", pid)["seed"] for pid in ("a", "a", "b"))
    assert first == again != other
    (shifted,) = expand([parse_run("best_of_n n=2 seed=5")])
    assert shifted.request("q", "a")["seed"] == (first + 5) % 2**31
    (unseeded,) = expand([parse_run("best_of_n n=2 seed=none")])
    assert "seed" not in unseeded.request("q", "a")


def test_runs_reporting_the_same_point_need_distinct_labels() -> None:
    with pytest.raises(ValueError, match="label"):
        expand([parse_run("beam_search width=2"), parse_run("beam_search width=2 temperature=1")])
    cells = expand(
        [parse_run("beam_search width=2"), parse_run("beam_search width=2 temperature=1 label=hot")]
    )
    assert [c.label for c in cells] == ["beam_search", "hot"]


def test_bad_specs_are_refused_with_a_reason() -> None:
    for text, reason in [
        ("n=4", "strategy name"),
        ("best_of_n n", "key=value"),
        ("beam_search budget.tokens=5", "budget field"),
        ("beam_search label=a,b", "cannot be swept"),
    ]:
        with pytest.raises(ValueError, match=reason):
            expand([parse_run(text)])


def test_toml_grid_matches_the_same_runs_given_as_flags(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(
        '[defaults]\nmax_new_tokens = 64\nreward = "arithmetic"\n'
        '[[run]]\nstrategy = "best_of_n"\nn = 8\nselection = "weighted"\n'
        '[[run]]\nstrategy = "beam_search"\nbudget = { max_tokens = [256, 512] }\n'
    )
    defaults, specs = load_grid_file(path)
    from_file = expand(specs, defaults)
    from_flags = expand(
        [
            parse_run("best_of_n n=8 selection=weighted"),
            parse_run("beam_search budget.max_tokens=256,512"),
        ],
        parse_params(["max_new_tokens=64", "reward=arithmetic"]),
    )
    assert [c.key for c in from_file] == [c.key for c in from_flags]
    assert from_file[0].reward == "arithmetic"


#: Found from this file, not the working directory, so the tests below run from anywhere.
GRIDS_DIR = Path(__file__).resolve().parent.parent / "clients" / "bench" / "grids"
SHIPPED_GRIDS = sorted(GRIDS_DIR.glob("*.toml"))


def test_the_grids_the_readme_names_are_shipped() -> None:
    """Guards the parametrized test below: with no grids found it would run nothing."""
    found = {path.name for path in SHIPPED_GRIDS}
    assert found >= {
        "published_arithmetic.toml",
        "published_gsm8k.toml",
        "published_rewards.toml",
        "scaling.toml",
    }, f"grids found in {GRIDS_DIR}: {sorted(found)}"


@pytest.mark.parametrize("shipped", SHIPPED_GRIDS, ids=lambda path: path.name)
def test_every_shipped_grid_measures_each_strategy_at_four_or_more_points(
    shipped: Path,
) -> None:
    points: dict[str, set[tuple[str, str]]] = {}
    for cell in expand(*reversed(load_grid_file(shipped))):
        for line in cell.lines():
            points.setdefault(cell.strategy, set()).add((line.label, line.setting))
    assert points
    for strategy, measured in points.items():
        fewest = min(sum(1 for label, _ in measured if label == one) for one, _ in measured)
        assert fewest >= 4, f"{shipped.name}: {strategy} at {sorted(measured)}"


def test_subsample_sizes() -> None:
    assert subsample_sizes(1) == (1,)
    assert subsample_sizes(8) == (1, 2, 4, 8)
    assert subsample_sizes(12) == (1, 2, 4, 8, 12)


def test_a_budget_in_the_toml_defaults_applies_to_every_run(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "[defaults]\nbudget = { max_tokens = [128, 256] }\n"
        '[[run]]\nstrategy = "mcts"\nsimulations = 8\n'
        '[[run]]\nstrategy = "dvts"\nn = 4\n'
    )
    defaults, runs = load_grid_file(grid)
    cells = expand(runs, defaults)
    assert sorted((c.strategy, c.budget["max_tokens"]) for c in cells) == [
        ("dvts", 128),
        ("dvts", 256),
        ("mcts", 128),
        ("mcts", 256),
    ]
    assert all("budget" not in c.params for c in cells)

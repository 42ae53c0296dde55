"""The README's "Adding a strategy" example is real code: run both of its blocks.

The first block (the strategy) is executed as a module; the second (its test on the
scripted tree) runs against it. A README edit that breaks either fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from search_strategies.registry import StrategySpec
from search_strategies.step_search import StepSearchParams

README = Path(__file__).resolve().parent.parent / "README.md"


def _example_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Adding a strategy", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_strategy_runs_and_its_test_passes() -> None:
    strategy_code, test_code = _example_blocks()
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(strategy_code, "README: the strategy", "exec"), namespace)
    params_model, strategy = namespace["GreedyStepsParams"], namespace["greedy_steps"]
    assert issubclass(params_model, StepSearchParams) and params_model().needs_reward
    StrategySpec("greedy_steps", params_model, strategy)  # what registering takes
    exec(compile(test_code, "README: its test", "exec"), namespace)
    assert namespace["result"].trace[0].parent is None

"""What a sweep runs: strategies × parameter values × budgets, from flags or a TOML file.

Nothing here knows a strategy's parameters: any name the server registers and any
field its `/v1/solve` accepts can be swept, so strategies added to the server need
no change here. A run spec is a strategy plus `key=value` pairs where a list of
values (comma-separated on the command line, a TOML array in a file) is a sweep
axis; `budget.max_tokens`, `budget.max_reward_calls` and `budget.time_limit_s` go
into the request's budget. Each combination is a `Cell`: one request shape, sent
once per problem. `label` names the line a cell draws in the plot and `setting`
its point on that line.

Best-of-N with one `n` is subsampled (search-and-learn style): the one run at the
largest N also yields the curves for N = 1, 2, 4, ... under majority, weighted and
max-reward selection, so a best-of-16 sweep costs one best-of-16 run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Keys of a run spec that are not strategy parameters.
_SPECIAL = ("strategy", "label", "reward", "subsample")
_BUDGET_PREFIX = "budget."
BUDGET_FIELDS = ("max_tokens", "max_reward_calls", "time_limit_s")
REWARD_SELECTIONS = ("weighted", "max_reward")


@dataclass(frozen=True)
class Line:
    """A (label, setting) point a cell's results are reported under."""

    label: str
    setting: str


@dataclass
class Cell:
    """One request shape of the grid."""

    label: str
    setting: str
    strategy: str
    params: dict[str, Any]
    budget: dict[str, Any] = field(default_factory=dict)
    reward: str | None = None
    #: Best-of-N sizes derived from this cell's samples; empty: no subsampling.
    subsample: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """Identifies the request shape in the results file (resume skips done keys)."""
        shape = {
            "strategy": self.strategy,
            "params": self.params,
            "budget": self.budget,
            "reward": self.reward,
            "subsample": list(self.subsample),
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def selections(self) -> tuple[str, ...]:
        """Selections subsampling can replay: reward ones only when samples carry rewards."""
        if self.params.get("selection", "majority") == "majority":
            return ("majority",)
        return ("majority", *REWARD_SELECTIONS)

    def lines(self) -> list[Line]:
        if not self.subsample:
            return [Line(self.label, self.setting)]
        rest = "" if self.setting == "default" else f",{self.setting}"
        return [
            Line(f"{self.label}/{selection}", f"n={size}{rest}")
            for selection in self.selections
            for size in self.subsample
        ]

    def request(self, question: str, problem_id: str) -> dict[str, Any]:
        """The `/v1/solve` body for one problem.

        An integer `seed` is a base: each problem gets base + a hash of its id, so
        runs are reproducible (and a resumed run asks the same questions the same
        way) while problems do not share sampling noise. `seed=none` sends none.
        """
        body: dict[str, Any] = {"question": question, "strategy": self.strategy}
        body.update({k: v for k, v in self.params.items() if k != "seed"})
        seed = self.params.get("seed", 0)
        if seed is not None:
            body["seed"] = (int(seed) + zlib.crc32(problem_id.encode())) % 2**31
        if self.reward is not None:
            body["reward"] = self.reward
        if self.budget:
            body["budget"] = dict(self.budget)
        return body


def parse_value(text: str) -> Any:
    """`4` -> 4, `0.5` -> 0.5, `true` -> True, `none` -> None, anything else a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_run(text: str) -> dict[str, Any]:
    """`"best_of_n n=16 selection=weighted"` -> a run spec dict (lists are sweep axes)."""
    words = shlex.split(text)
    if not words or "=" in words[0]:
        raise ValueError(f"run spec {text!r} must start with a strategy name")
    spec: dict[str, Any] = {"strategy": words[0]}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"run spec {text!r}: expected key=value, got {word!r}")
        values = [parse_value(v) for v in value.split(",")]
        spec[key] = values if len(values) > 1 else values[0]
    return spec


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`--param key=value` flags (single values) into a defaults dict."""
    defaults: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects key=value, got {pair!r}")
        defaults[key] = parse_value(value)
    return defaults


def load_grid_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A TOML grid: optional `[defaults]` table and `[[run]]` tables."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    runs = data.get("run", [])
    if not runs:
        raise ValueError(f"{path}: no [[run]] tables")
    defaults = _flatten_budget(dict(data.get("defaults", {})))
    return defaults, [_flatten_budget(run) for run in runs]


def _flatten_budget(spec: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in spec.items() if k != "budget"}
    for key, value in spec.get("budget", {}).items():
        flat[_BUDGET_PREFIX + key] = value
    return flat


def expand(specs: list[dict[str, Any]], defaults: dict[str, Any] | None = None) -> list[Cell]:
    """Every cell of every run spec; rejects two cells reporting the same line point."""
    cells: list[Cell] = []
    for spec in specs:
        cells.extend(_expand_one({**(defaults or {}), **_flatten_budget(spec)}))
    seen: dict[Line, str] = {}
    for cell in cells:
        for line in cell.lines():
            if line in seen:
                raise ValueError(
                    f"two runs both report {line.label} at {line.setting}; "
                    "give one of them a distinct label=..."
                )
            seen[line] = cell.key
    return cells


def _expand_one(spec: dict[str, Any]) -> list[Cell]:
    if "strategy" not in spec:
        raise ValueError(f"run spec {spec} has no strategy")
    axes = {k: v for k, v in spec.items() if isinstance(v, list)}
    fixed = {k: v for k, v in spec.items() if not isinstance(v, list)}
    for key in ("strategy", "label", "reward", "subsample"):
        if key in axes:
            raise ValueError(f"{key} cannot be swept; write one run per {key}")
    for key in spec:
        if key.startswith(_BUDGET_PREFIX) and key[len(_BUDGET_PREFIX) :] not in BUDGET_FIELDS:
            raise ValueError(f"unknown budget field {key!r}; known: {BUDGET_FIELDS}")
    names = list(axes)
    cells = []
    for values in itertools.product(*(axes[name] for name in names)) if names else [()]:
        chosen = {**fixed, **dict(zip(names, values))}
        cells.append(_cell(chosen, swept=names))
    return cells


def _cell(spec: dict[str, Any], swept: list[str]) -> Cell:
    strategy = str(spec["strategy"])
    params = {
        k: v for k, v in spec.items() if k not in _SPECIAL and not k.startswith(_BUDGET_PREFIX)
    }
    budget = {
        k[len(_BUDGET_PREFIX) :]: v
        for k, v in spec.items()
        if k.startswith(_BUDGET_PREFIX) and v is not None
    }
    auto_label = "label" not in spec
    label = str(spec.get("label") or strategy)
    subsample: tuple[int, ...] = ()
    if strategy == "best_of_n":
        n = int(params.get("n", 4))
        # A token budget caps each sample by N, so smaller N would not see the same
        # samples: such runs are sent directly.
        if spec.get("subsample", True) and "n" not in swept and "max_tokens" not in budget:
            subsample = subsample_sizes(n)
        elif auto_label:
            label = f"{strategy}/{params.get('selection', 'majority')}"
    setting_keys = [k for k in swept if not (auto_label and k == "selection")]
    setting = ",".join(f"{k}={_text(spec[k])}" for k in setting_keys) or "default"
    return Cell(label, setting, strategy, params, budget, spec.get("reward"), subsample)


def subsample_sizes(n: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to n, and n itself."""
    sizes = [2**i for i in range(n.bit_length()) if 2**i <= n]
    if sizes[-1] != n:
        sizes.append(n)
    return tuple(sizes)


def _text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value

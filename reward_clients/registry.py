"""Reward clients by name, as the server's `--reward` flag lists them.

`--reward arithmetic,self-judge` offers two choices (the first is the default);
`--reward arithmetic:0.5,self-judge:0.5` combines them into one weighted ensemble
named `ensemble`, which becomes the default while each member stays selectable on
its own; `--reward none` (or an empty value) offers none. Names built outside this
module (the server's `prm`) are passed in as `extra`, so they can be ensemble
members too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.combinators import WeightedEnsemble
from reward_clients.self_judge import SelfJudge
from search_strategies.protocols import Policy
from search_strategies.reward import RewardModel

#: name -> factory; a factory gets the server's policy (a self-judge needs it).
REWARD_FACTORIES: dict[str, Callable[[Policy], RewardModel]] = {
    "arithmetic": lambda _policy: ArithmeticVerifier(),
    "self-judge": SelfJudge,
}
ENSEMBLE = "ensemble"
#: The `--reward` value that offers no reward (an empty value means the same).
NO_REWARD = "none"


@dataclass(frozen=True)
class RewardSpec:
    """A parsed `--reward` value."""

    #: Client names in the order given.
    names: tuple[str, ...] = ()
    #: name -> weight when the value was weighted (an ensemble), else empty.
    weights: Mapping[str, float] = field(default_factory=dict)

    @property
    def choices(self) -> tuple[str, ...]:
        """What a request may name, the default first."""
        return ((ENSEMBLE,) if self.weights else ()) + self.names


def parse_reward_spec(spec: str, extra: tuple[str, ...] = ()) -> RewardSpec:
    """Parse `name[,name...]` or `name:weight[,name:weight...]`; errors say what to fix.

    `none` (or "") is no reward at all: a server that should run only what needs none.
    """
    known = set(REWARD_FACTORIES) | set(extra)
    names: list[str] = []
    weights: dict[str, float] = {}
    items = [part.strip() for part in spec.split(",") if part.strip()]
    if items == [NO_REWARD]:
        return RewardSpec()
    if NO_REWARD in items:
        raise ValueError(f"reward {NO_REWARD!r} means no reward and cannot be listed with "
                         f"others: {spec!r}")
    for item in items:
        name, sep, raw_weight = (part.strip() for part in item.partition(":"))
        if name not in known:
            raise ValueError(f"unknown reward {name!r}; available: {', '.join(sorted(known))}")
        if name in names:
            raise ValueError(f"reward {name!r} is listed twice")
        names.append(name)
        if sep:
            try:
                weight = float(raw_weight)
            except ValueError:
                weight = math.nan
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"weight of reward {name!r} must be a positive number, "
                                 f"got {raw_weight!r}")
            weights[name] = weight
    if weights and len(weights) != len(names):
        raise ValueError("give every --reward item a weight (an ensemble) or none (choices), "
                         f"not a mix: {spec!r}")
    return RewardSpec(tuple(names), weights)


def reward_names(spec: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The selectable names of a `--reward` value (default first); unknown is an error."""
    return list(parse_reward_spec(spec, extra).choices)


def build_rewards(
    spec: str, policy: Policy, extra: Mapping[str, RewardModel] | None = None
) -> dict[str, RewardModel]:
    """Instantiate the rewards named in `spec` ("" or "none": none), default first.

    `extra` holds clients the server built itself (e.g. `prm`); they are offered
    after the ones `spec` names, and may be ensemble members.
    """
    extra = dict(extra or {})
    parsed = parse_reward_spec(spec, tuple(extra))
    clients = {
        name: extra[name] if name in extra else REWARD_FACTORIES[name](policy)
        for name in parsed.names
    }
    rewards: dict[str, RewardModel] = {}
    if parsed.weights:
        rewards[ENSEMBLE] = WeightedEnsemble(
            [(clients[name], parsed.weights[name]) for name in parsed.names], ENSEMBLE
        )
    rewards.update(clients)
    for name, client in extra.items():
        rewards.setdefault(name, client)
    return rewards

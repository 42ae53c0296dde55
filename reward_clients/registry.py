"""Reward clients by name, as the server's `--reward` flag lists them."""

from __future__ import annotations

from typing import Callable

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.self_judge import SelfJudge
from search_strategies.protocols import Policy
from search_strategies.reward import RewardModel

#: name -> factory; a factory gets the server's policy (a self-judge needs it).
REWARD_FACTORIES: dict[str, Callable[[Policy], RewardModel]] = {
    "arithmetic": lambda _policy: ArithmeticVerifier(),
    "self-judge": SelfJudge,
}


def reward_names(spec: str) -> list[str]:
    """The names in a comma-separated `--reward` value; unknown names are an error."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    for name in names:
        if name not in REWARD_FACTORIES:
            known = ", ".join(sorted(REWARD_FACTORIES))
            raise ValueError(f"unknown reward {name!r}; available: {known}")
    return names


def build_rewards(spec: str, policy: Policy) -> dict[str, RewardModel]:
    """Instantiate the rewards named in `spec` ("" means none), in order."""
    return {name: REWARD_FACTORIES[name](policy) for name in reward_names(spec)}

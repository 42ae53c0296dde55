"""Reward clients by name, as the server's `--reward` flag lists them."""

from __future__ import annotations

from typing import Callable

from reward_clients.arithmetic import ArithmeticVerifier
from search_strategies.reward import RewardModel

REWARD_FACTORIES: dict[str, Callable[[], RewardModel]] = {
    "arithmetic": ArithmeticVerifier,
}


def build_rewards(spec: str) -> dict[str, RewardModel]:
    """Instantiate the comma-separated reward names in `spec` ("" means none)."""
    rewards: dict[str, RewardModel] = {}
    for name in (part.strip() for part in spec.split(",")):
        if not name:
            continue
        factory = REWARD_FACTORIES.get(name)
        if factory is None:
            known = ", ".join(sorted(REWARD_FACTORIES))
            raise ValueError(f"unknown reward {name!r}; available: {known}")
        rewards[name] = factory()
    return rewards

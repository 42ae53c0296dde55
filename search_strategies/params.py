"""Request parameters shared by every strategy, validated against server maximums.

Each strategy declares a pydantic model derived from `StrategyParams`; the server
validates a request's strategy fields with it, passing its `ServerLimits` as the
validation context, so a limit is checked where the field is defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from search_strategies.protocols import SamplingConfig


@dataclass(frozen=True)
class ServerLimits:
    """Server-side maximums a request may not exceed."""

    max_n: int = 64
    max_new_tokens: int = 2048
    max_tokens: int = 65536
    max_reward_calls: int = 1024
    max_time_limit_s: float = 600.0
    max_steps: int = 64
    max_simulations: int = 1024


def limits_from(info: ValidationInfo) -> ServerLimits:
    """The limits passed as validation context, or the defaults outside a server."""
    context = info.context or {}
    return context.get("limits", ServerLimits())


def at_most_limit(value: float | None, info: ValidationInfo, limit_name: str) -> None:
    """Reject `value` above the server maximum `limit_name`, naming that limit."""
    limit = getattr(limits_from(info), limit_name)
    if value is not None and value > limit:
        raise ValueError(f"must be at most the server maximum {limit_name}={limit}")


def capped_by(limit_name: str, *field_names: str) -> Any:
    """A validator rejecting `field_names` above the server maximum `limit_name`.

    Use as a class attribute: `_n_cap = capped_by("max_n", "n")`.
    """

    def check(value: Any, info: ValidationInfo) -> Any:
        at_most_limit(value, info, limit_name)
        return value

    return field_validator(*field_names)(check)


class StrategyParams(BaseModel):
    """Sampling fields every strategy accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.8, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(
        512, ge=1, description="New tokens per sampled solution (before budget caps)."
    )
    seed: int | None = Field(
        None, ge=0, description="Makes sampling reproducible for the same request."
    )

    _new_tokens_cap = capped_by("max_new_tokens", "max_new_tokens")

    #: The request field to name when a reward is needed but none is configured.
    reward_field: ClassVar[str] = "strategy"

    @property
    def needs_reward(self) -> bool:
        """Whether these parameters make the strategy call a reward model."""
        return False

    def sampling(self, n: int, max_tokens: int) -> SamplingConfig:
        return SamplingConfig(
            n=n,
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )

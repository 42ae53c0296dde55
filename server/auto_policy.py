"""Loading the `auto` strategy's policy table (`--auto-policy`), checked at startup.

A table that is malformed, names a strategy this server does not have, holds
parameters the server limits refuse, or was fitted for another model is refused
when the server starts (`AutoPolicyError`, naming what to fix), never at request
time. Without `--auto-policy` the packaged table (fitted on the published arithmetic
sweep of the embedded model) is used when the server runs that model; for any other
model `auto` is then not offered (a request for it is a 400 saying how to fit one).
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

from pydantic import ValidationError

from search_strategies.auto_policy import AutoPolicy
from search_strategies.params import ServerLimits
from search_strategies.registry import STRATEGIES
from server.settings import Settings

log = logging.getLogger(__name__)

#: The packaged table, for the embedded model with the `arithmetic` reward.
PACKAGED = "smollm2-arithmetic.json"


class AutoPolicyError(ValueError):
    """The policy table cannot be used by this server (the message says why)."""


def load_auto_policy(settings: Settings) -> AutoPolicy | None:
    """The table `auto` will use, or None when there is none for this model."""
    explicit = settings.auto_policy is not None
    where = f"--auto-policy {settings.auto_policy}" if explicit else f"packaged {PACKAGED}"
    try:
        if settings.auto_policy is not None:
            text = Path(settings.auto_policy).read_text(encoding="utf-8")
        else:
            text = files("server.auto_policies").joinpath(PACKAGED).read_text(encoding="utf-8")
        policy = AutoPolicy.model_validate_json(text)
    except OSError as error:
        raise AutoPolicyError(f"{where}: cannot read it ({error})") from None
    except ValidationError as error:
        raise AutoPolicyError(f"{where}: not a valid policy table: {error}") from None
    if policy.model != settings.model_name:
        if explicit:
            raise AutoPolicyError(
                f"{where} was fitted for model {policy.model!r} and this server serves "
                f"{settings.model_name!r}; fit one for it with `ponder bench fit-auto`"
            )
        log.info("no auto policy table for %s: strategy auto is not offered", settings.model_name)
        return None
    check_choices(policy, settings.limits, where)
    return policy


def check_choices(policy: AutoPolicy, limits: ServerLimits, where: str) -> None:
    """Every choice names a strategy this server runs, with parameters it accepts."""
    for bin_name, choices in policy.choices.items():
        for index, choice in enumerate(choices):
            at = f"{where}: choices.{bin_name}[{index}]"
            spec = STRATEGIES.get(choice.strategy)
            if spec is None or choice.strategy == "auto":
                names = ", ".join(name for name in STRATEGIES if name != "auto")
                raise AutoPolicyError(f"{at}: strategy {choice.strategy!r} is not one of {names}")
            try:
                spec.params_model.model_validate(choice.params, context={"limits": limits})
            except ValidationError as error:
                raise AutoPolicyError(f"{at}: parameters refused: {error}") from None

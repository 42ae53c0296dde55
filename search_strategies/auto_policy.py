"""The policy table behind the `auto` strategy: which search to run for a question of a
given estimated difficulty at a given budget (Snell et al. 2024, "compute-optimal"
test-time scaling).

Difficulty is a bin of one probe feature (the mean reward of a few probe samples, or
how much their answers agree), the bins' bounds being quantiles of that feature over
the problems the table was fitted on (`ponder bench fit-auto`). For each bin the
table lists, per token budget, the strategy and parameters that scored best on those
problems, with the evidence (accuracy, how many problems). A table says which model
and reward it was fitted for; a server refuses one made for another model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT: Literal["ponder-auto-policy/1"] = "ponder-auto-policy/1"

#: What the probe measures: the mean reward of its samples (needs a reward), or the
#: share of them that give the most common answer.
Feature = Literal["mean_reward", "agreement"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSpec(_Strict):
    """The probe: best-of-`n` short samples, scored by the reward in one call."""

    n: int = Field(4, ge=1)
    max_new_tokens: int = Field(128, ge=1)


class DifficultyBin(_Strict):
    """Problems whose probe feature is at most `upper` (and above the previous bin's)."""

    name: str = Field(min_length=1)
    upper: float


class AutoChoice(_Strict):
    """What to run in one bin at budgets of `max_tokens` and up, and why."""

    max_tokens: int = Field(ge=1)
    strategy: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    #: The evidence: accuracy of this choice on the fitting problems of the bin.
    accuracy: float = Field(ge=0.0, le=1.0)
    problems: int = Field(ge=0)


class AutoPolicy(_Strict):
    format: Literal["ponder-auto-policy/1"] = FORMAT
    model: str = Field(min_length=1, description="The policy model it was fitted for.")
    reward: str | None = Field(None, description="The reward it was fitted with.")
    feature: Feature = "mean_reward"
    probe: ProbeSpec = Field(default_factory=ProbeSpec)
    bins: list[DifficultyBin] = Field(min_length=1)
    choices: dict[str, list[AutoChoice]]
    fitted_on: list[str] = Field(default_factory=list, description="The results files.")

    @model_validator(mode="after")
    def _every_bin_has_choices(self) -> AutoPolicy:
        uppers = [b.upper for b in self.bins]
        if uppers != sorted(uppers) or len(set(uppers)) != len(uppers):
            raise ValueError(f"bins: upper bounds must increase, got {uppers}")
        names = [b.name for b in self.bins]
        if len(set(names)) != len(names):
            raise ValueError(f"bins: names must be distinct, got {names}")
        missing = [name for name in names if not self.choices.get(name)]
        if missing:
            raise ValueError(f"choices: no choice for bin(s) {missing}")
        unknown = sorted(set(self.choices) - set(names))
        if unknown:
            raise ValueError(f"choices: {unknown} are not bins ({names})")
        return self

    def bin_of(self, value: float) -> DifficultyBin:
        """The bin of a feature value (above the last bound: the last bin)."""
        return next((b for b in self.bins if value <= b.upper), self.bins[-1])

    def choice_for(self, bin_name: str, tokens_left: int | None) -> AutoChoice:
        """The bin's choice for the largest budget that fits in `tokens_left` (None:
        unlimited), or its smallest one when none fits."""
        options = sorted(self.choices[bin_name], key=lambda c: c.max_tokens)
        fitting = [c for c in options if tokens_left is None or c.max_tokens <= tokens_left]
        return fitting[-1] if fitting else options[0]

"""Reasoning steps: how a solution's text is cut into the units a PRM scores."""

from __future__ import annotations

#: Models trained for step-level rewards separate steps with a blank line.
DEFAULT_STEP_DELIMITER = "\n\n"


def split_steps(text: str, delimiter: str = DEFAULT_STEP_DELIMITER) -> list[str]:
    """Non-blank steps of `text`, stripped; an empty solution has no steps."""
    return [step.strip() for step in text.split(delimiter) if step.strip()]

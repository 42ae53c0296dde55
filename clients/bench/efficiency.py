"""`ponder bench efficiency`: how much compute each strategy needs to match a
reference's best accuracy (Snell et al. 2024's "4x less compute than best-of-N"),
accuracy per difficulty level, and what `auto` chose.

The reference (by default `best_of_n/weighted`) is read at its most accurate point
(ties: the cheaper). For every other line, the cheapest point (mean generated tokens
per problem) at or above that accuracy is the compute it needs; the ratio reference
tokens / those tokens is the saving (above 1: cheaper than the reference). A line that
never gets there says so, with its own best. Points are the bench's summary cells, so
the ratio is only as firm as the accuracies behind it: the table carries each
point's Wilson interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from clients.bench.report import SummaryRow, summarize
from clients.bench.store import Row

DEFAULT_REFERENCE = "best_of_n/weighted"


@dataclass(frozen=True)
class Match:
    """One line against the reference's best point."""

    label: str
    #: The line's cheapest point reaching the target, or None when none does.
    point: SummaryRow | None
    #: The line's most accurate point (what it reaches instead).
    best: SummaryRow

    def saving(self, reference: SummaryRow) -> float | None:
        """Reference tokens / this line's tokens at the target accuracy."""
        if self.point is None or self.point.mean_generated_tokens <= 0:
            return None
        return reference.mean_generated_tokens / self.point.mean_generated_tokens


def best_point(points: Iterable[SummaryRow]) -> SummaryRow:
    """The most accurate point; among equals, the one that generated fewest tokens."""
    return max(points, key=lambda s: (s.accuracy, -s.mean_generated_tokens))


def matches(summary: list[SummaryRow], reference: str) -> tuple[SummaryRow, list[Match]]:
    """The reference's best point, and every other line's match against it."""
    lines: dict[str, list[SummaryRow]] = defaultdict(list)
    for row in summary:
        lines[row.label].append(row)
    if reference not in lines:
        known = ", ".join(sorted(lines)) or "none"
        raise ValueError(f"no line {reference!r} in the results (lines: {known})")
    target = best_point(lines.pop(reference))
    found = []
    for label, points in sorted(lines.items()):
        reaching = [p for p in points if p.accuracy >= target.accuracy]
        cheapest = min(reaching, key=lambda p: p.mean_generated_tokens, default=None)
        found.append(Match(label, cheapest, best_point(points)))
    return target, found


def matches_table(target: SummaryRow, found: list[Match]) -> str:
    lines = [
        f"reference {target.label} at its best: {_point(target)}",
        "",
        "| strategy | cheapest point at or above it | compute saving | its own best |",
        "|---|---|---|---|",
    ]
    for match in found:
        saving = match.saving(target)
        lines.append(
            f"| {match.label} | {_point(match.point) if match.point else 'never'} "
            f"| {f'{saving:.2f}x' if saving is not None else '-'} | {_point(match.best)} |"
        )
    return "\n".join(lines)


def _point(row: SummaryRow) -> str:
    return (
        f"{row.accuracy:.2f} ({row.ci95_low:.2f}-{row.ci95_high:.2f}) at "
        f"{row.mean_generated_tokens:.0f} tok ({row.setting})"
    )


def by_level(rows: list[Row]) -> str:
    """Accuracy (95 % Wilson interval, problems) of every cell per difficulty level:
    the bench's own summary, taken once over all rows and once per level."""
    levels: list[int] = sorted({row["level"] for row in rows if row.get("level") is not None})
    if not levels:
        raise ValueError("no row carries a level (only leveled datasets can be split)")
    per_level = {
        level: {_key(s): s for s in summarize([r for r in rows if r.get("level") == level])}
        for level in levels
    }
    header = " | ".join(f"level {level}" for level in levels)
    lines = [
        f"| strategy | setting | mean tokens | {header} |",
        "|---|---|---|" + "---|" * len(levels),
    ]
    for cell in summarize(rows):
        parts = [_share(per_level[level].get(_key(cell))) for level in levels]
        lines.append(
            f"| {cell.label} | {cell.setting} | {cell.mean_generated_tokens:.0f} "
            f"| {' | '.join(parts)} |"
        )
    return "\n".join(lines)


def _key(row: SummaryRow) -> tuple[str, str, str]:
    return row.dataset, row.label, row.setting


def _share(row: SummaryRow | None) -> str:
    if row is None:
        return "-"
    return f"{row.accuracy:.2f} ({row.ci95_low:.2f}-{row.ci95_high:.2f}, {row.problems})"


def auto_choices(rows: list[Row]) -> str | None:
    """Per `auto` cell: how often each (difficulty bin, chosen strategy) came up and
    how accurate it was; None when no row records a choice (older results, or no
    `auto` line)."""
    groups: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for row in rows:
        decision = row.get("auto")
        if decision:
            chosen = decision.get("chosen") or "the probe's pick"
            key = (row["setting"], str(decision.get("difficulty")), chosen)
            groups[key].append(bool(row["correct"]))
    if not groups:
        return None
    lines = ["| setting | difficulty | chosen | problems | accuracy |", "|---|---|---|---|---|"]
    for (setting, difficulty, chosen), marks in sorted(groups.items()):
        share = sum(marks) / len(marks)
        lines.append(f"| {setting} | {difficulty} | {chosen} | {len(marks)} | {share:.2f} |")
    return "\n".join(lines)

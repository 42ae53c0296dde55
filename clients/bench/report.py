"""Summary table, unparseable-answer list and scaling plot from result rows.

Everything here is a function of the rows alone, so `ponder bench report
RESULTS.jsonl` rebuilds exactly what the sweep wrote, and a resumed sweep gives
the same summary as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from clients.bench.coverage import CoverageRow, coverage
from clients.bench.store import Row

_Z95 = 1.959963984540054
_UNPARSEABLE_COLUMNS = ("dataset", "label", "setting", "problem_id", "answer", "answer_tail")


@dataclass(frozen=True)
class SummaryRow:
    dataset: str
    label: str
    setting: str
    problems: int
    correct: int
    accuracy: float
    ci95_low: float
    ci95_high: float
    unparseable: int
    mean_generated_tokens: float
    mean_reward_calls: float
    mean_latency_s: float


@dataclass(frozen=True)
class PlotPoint:
    setting: str
    mean_generated_tokens: float
    accuracy: float
    ci95_low: float
    ci95_high: float


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval: unlike p ± 1.96·se it stays in [0, 1] at 0/20 or 20/20."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + _Z95**2 / total
    centre = (p + _Z95**2 / (2 * total)) / denominator
    half = _Z95 * math.sqrt(p * (1 - p) / total + _Z95**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(rows: Iterable[Row]) -> list[SummaryRow]:
    """One row per dataset × line label × setting, ordered for reading."""
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["label"], row["setting"])].append(row)
    summary = []
    for (dataset, label, setting), members in groups.items():
        correct = sum(bool(r["correct"]) for r in members)
        usages = [r["usage"] for r in members]
        low, high = wilson_interval(correct, len(members))
        summary.append(
            SummaryRow(
                dataset=dataset,
                label=label,
                setting=setting,
                problems=len(members),
                correct=correct,
                accuracy=round(correct / len(members), 4),
                ci95_low=round(low, 4),
                ci95_high=round(high, 4),
                unparseable=sum(not r["parsed"] for r in members),
                mean_generated_tokens=round(fmean(u["generated_tokens"] for u in usages), 1),
                mean_reward_calls=round(fmean(u.get("reward_calls", 0) for u in usages), 2),
                mean_latency_s=round(fmean(r["latency_s"] for r in members), 2),
            )
        )
    summary.sort(key=lambda s: (s.dataset, s.label, s.mean_generated_tokens, s.setting))
    return summary


def plot_data(summary: list[SummaryRow]) -> dict[str, dict[str, list[PlotPoint]]]:
    """Per dataset, one line per label: its points by increasing mean generated tokens."""
    data: dict[str, dict[str, list[PlotPoint]]] = defaultdict(dict)
    for s in summary:
        data[s.dataset].setdefault(s.label, []).append(
            PlotPoint(s.setting, s.mean_generated_tokens, s.accuracy, s.ci95_low, s.ci95_high)
        )
    for lines in data.values():
        for points in lines.values():
            points.sort(key=lambda p: p.mean_generated_tokens)
    return dict(data)


def write_plot(data: dict[str, dict[str, list[PlotPoint]]], path: Path, title: str = "") -> None:
    """Accuracy vs mean generated tokens per problem (log2 x), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = max(1, len(data))
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    for axis, (dataset, lines) in zip(axes[0], sorted(data.items())):
        for label, points in sorted(lines.items()):
            x = [max(p.mean_generated_tokens, 1.0) for p in points]
            y = [p.accuracy for p in points]
            errors = [
                [p.accuracy - p.ci95_low for p in points],
                [p.ci95_high - p.accuracy for p in points],
            ]
            axis.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=label)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("mean generated tokens per problem (log2)")
        axis.set_ylabel("accuracy (95% CI)")
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(dataset)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def unparseable(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Predictions graded wrong because no answer could be read from them."""
    return [{k: r.get(k) for k in _UNPARSEABLE_COLUMNS} for r in rows if not r["parsed"]]


def markdown_table(summary: list[SummaryRow]) -> str:
    header = (
        "| dataset | strategy | setting | accuracy (95% CI) | n | mean gen tokens "
        "| mean reward calls | mean latency (s) |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [
        f"| {s.dataset} | {s.label} | {s.setting} | {s.accuracy:.2f} "
        f"({s.ci95_low:.2f}-{s.ci95_high:.2f}) | {s.problems} | {s.mean_generated_tokens:.0f} "
        f"| {s.mean_reward_calls:.2f} | {s.mean_latency_s:.1f} |"
        for s in summary
    ]
    return "\n".join([header, *lines])


def write_report(rows: list[Row], out: Path) -> list[SummaryRow]:
    """summary.csv, coverage.csv, unparseable.csv, plot.json (the plot's data) and
    plot.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    _write_csv(out / "summary.csv", [asdict(s) for s in summary], list(SummaryRow.__annotations__))
    _write_csv(
        out / "coverage.csv", [asdict(c) for c in coverage(rows)], list(CoverageRow.__annotations__)
    )
    _write_csv(out / "unparseable.csv", unparseable(rows), list(_UNPARSEABLE_COLUMNS))
    data = plot_data(summary)
    (out / "plot.json").write_text(
        json.dumps(
            {
                d: {label: [asdict(p) for p in points] for label, points in lines.items()}
                for d, lines in data.items()
            },
            indent=1,
        )
    )
    models = sorted({str(r.get("model")) for r in rows})
    write_plot(data, out / "plot.png", title=", ".join(models))
    return summary


def _write_csv(path: Path, records: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)

"""Every run as a dot beside its row's mean and 95% interval: the spread over seeds, per group.

The interval is Student's t over the runs' accuracies (`harness.analysis.replication.t_interval`),
so it widens with the run-to-run spread, on this test set; a row with one run gets its dot and
the words "1 run", no interval.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from harness.analysis.replication import t_interval
from harness.report.figures.common import FigureFamily, FigureGroup, save_figure


def draw(group: FigureGroup) -> list[Path]:
    out = group.out / f"seeds_{group.subject}.png"
    path = seeds_chart(group, f"Video top-1 per run, mean and 95% interval: {group.data}", out)
    return [path] if path is not None else []


FAMILY = FigureFamily("seeds", "Accuracy per run (seed spread)", "group", draw)


def seeds_chart(group: FigureGroup, title: str, out: Path) -> Path | None:
    """One line per row: its runs' accuracies as dots, the mean as a bar with its interval."""
    shown = [(row, _run_outcomes(group, row)) for row in group.rows]
    shown = [(row, runs) for row, runs in shown if runs]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(shown) + 1.5))
    jitter = np.random.default_rng(0)
    for position, (_, runs) in enumerate(shown):
        accuracies = np.array([100 * values.mean() for values in runs])
        ax.scatter(accuracies, position + jitter.uniform(-0.12, 0.12, len(runs)), s=18,
                   color="tab:gray", alpha=0.8, zorder=2)  # fmt: skip
        mean = accuracies.mean()
        if len(runs) > 1:
            low, high = t_interval(accuracies)
            ax.errorbar(mean, position, xerr=[[mean - low], [high - mean]], fmt="o",
                        color="tab:blue", capsize=4, zorder=3)  # fmt: skip
        else:
            ax.plot(mean, position, "o", color="tab:orange", zorder=3)
            ax.annotate("1 run", (mean, position), xytext=(6, 6), textcoords="offset points")
    ax.set_yticks(range(len(shown)), [row.name for row, _ in shown])
    ax.invert_yaxis()
    ax.set(xlabel="video top-1 (%)", title=title)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, out)


def _run_outcomes(group: FigureGroup, row) -> list[np.ndarray]:
    """Per-video correctness of each of the row's runs that logged per-video scores."""
    found = (group.outcomes.get(run.run_id) for run in row.runs)
    return [np.array(list(outcome.values())) for outcome in found if outcome]

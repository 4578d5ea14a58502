"""Training loss and training clip accuracy per epoch, one line per model (mean over runs)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from harness.report.figures.common import FigureFamily, FigureGroup, save_figure
from harness.report.rows import ReportRow

CURVE_RUNS = 5  # training curves read the history of at most this many runs per row


def draw(group: FigureGroup) -> list[Path]:
    out = group.out / f"curves_{group.subject}.png"
    path = curves_chart(group.rows, f"Training curves: {group.data}", out)
    return [path] if path is not None else []


FAMILY = FigureFamily("curves", "Training curves", "group", draw)


def curves_chart(rows: list[ReportRow], title: str, out: Path) -> Path | None:
    """Training loss and training clip accuracy per epoch, one line per model (mean over runs)."""
    import seaborn as sns

    records = []
    for row in rows:
        for run in row.runs[:CURVE_RUNS]:
            for metric, name in (("train_loss", "loss"), ("train_clip_accuracy", "accuracy")):
                records += [
                    {"model": row.name, "epoch": step + 1, "metric": name, "value": value}
                    for step, value in run.metric_history(metric)
                ]
    if not records:
        return None
    data = pd.DataFrame.from_records(records)
    shown = [m for m in ("loss", "accuracy") if (data.metric == m).any()]
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], shown, strict=True):
        sns.lineplot(data=data[data.metric == metric], x="epoch", y="value", hue="model",
                     marker="o", ax=ax, errorbar="sd")  # fmt: skip
        ax.set(xlabel="epoch", ylabel=f"training {'loss' if metric == 'loss' else 'clip accuracy'}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title="model", fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out)

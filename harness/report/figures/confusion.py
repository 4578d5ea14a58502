"""A row-normalised confusion matrix per model, summed over the row's runs."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.report.figures.common import (
    FigureFamily,
    FigureGroup,
    artifact_texts,
    save_figure,
    slug,
)
from harness.report.rows import ReportRow


def draw(group: FigureGroup) -> list[Path]:
    drawn = [
        confusion_chart(
            row,
            f"Confusion: {row.name} on {group.data}",
            group.out / f"confusion_{slug(row.key)}.png",
        )  # fmt: skip
        for row in group.rows
        if row.runs
    ]
    return [path for path in drawn if path is not None]


FAMILY = FigureFamily("confusion", "Confusion matrix", "row", draw)


def confusion_chart(row: ReportRow, title: str, out: Path) -> Path | None:
    """Row-normalised confusion (% of each true class), summed over the row's runs."""
    import seaborn as sns

    tables = [
        pd.read_csv(io.StringIO(t), index_col=0) for t in artifact_texts(row, "confusion.csv")
    ]
    if not tables:
        return None
    counts = sum(t.to_numpy(dtype=float) for t in tables)
    classes = list(tables[0].columns)
    percent = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(max(5.0, 0.22 * len(classes) + 3), 24)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    small = len(classes) <= 12
    sns.heatmap(percent, ax=ax, vmin=0, vmax=100, cmap="Blues", square=True, annot=small,
                fmt=".0f", xticklabels=classes, yticklabels=classes,
                cbar_kws={"label": "% of the true class"})  # fmt: skip
    fontsize = 9 if small else max(4, 9 - len(classes) // 15)
    ax.tick_params(labelsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_figure(fig, out)

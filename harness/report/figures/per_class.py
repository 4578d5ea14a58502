"""Per-class video accuracy of the top-20 classes, grouped bars per model (EAM Fig. 5): the mean
over each model's runs, descriptive only (the classes are picked by the outcome, and with few test
videos a class moves by several points per video), which its title says."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from harness.report.figures.common import FigureFamily, FigureGroup, artifact_texts, save_figure
from harness.report.rows import ReportRow

TOP_CLASSES = 20  # EAM Fig. 5 shows the top-20 classes


def draw(group: FigureGroup) -> list[Path]:
    out = group.out / f"per_class_{group.subject}.png"
    title = f"Per-class video accuracy, top classes, mean over runs (descriptive): {group.data}"
    path = per_class_chart(group.rows, title, out)
    return [path] if path is not None else []


FAMILY = FigureFamily("per_class", "Per-class accuracy (EAM Fig. 5)", "group", draw)


def per_class_frame(rows: list[ReportRow]) -> pd.DataFrame:
    """Per-class accuracy (%) of every row with runs, averaged over its runs: model, class, acc."""
    frames = []
    for row in rows:
        lines = [line for text in artifact_texts(row, "per_class.csv") for line in _csv_rows(text)]
        if not lines:
            continue
        table = pd.DataFrame(lines, columns=["class", "accuracy"])
        table["accuracy"] = pd.to_numeric(table["accuracy"])  # "" (no test video) becomes NaN
        joined = table.groupby("class", sort=False)["accuracy"].mean() * 100
        frames.append(pd.DataFrame({"model": row.name, "class": joined.index,
                                    "accuracy": joined.to_numpy()}))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_class_chart(rows: list[ReportRow], title: str, out: Path) -> Path | None:
    """Grouped bars of the top-20 classes by mean accuracy over the models (EAM Fig. 5)."""
    import seaborn as sns

    data = per_class_frame(rows)
    if data.empty:
        return None
    order = data.groupby("class")["accuracy"].mean().sort_values(ascending=False)
    top = list(order.index[:TOP_CLASSES])
    data = data[data["class"].isin(top)]
    models = data["model"].nunique()
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(top) * max(models, 2)), 5))
    sns.barplot(data=data, x="class", y="accuracy", hue="model", order=top, ax=ax)
    ax.set(xlabel="class", ylabel="video accuracy (%)", ylim=(0, 105), title=title)
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return save_figure(fig, out)


def _csv_rows(text: str) -> list[list[str]]:
    """The data lines of a logged CSV (the csv module: pandas per file is slow over 1000 runs)."""
    return list(csv.reader(io.StringIO(text)))[1:]

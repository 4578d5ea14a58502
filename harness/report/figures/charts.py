"""Charts from logged artifacts: per-class accuracy (EAM Fig. 5), confusion matrices, training
curves. Every chart is a PNG with a title naming the dataset actually used."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.report.rows import ReportRow  # noqa: E402

TOP_CLASSES = 20  # EAM Fig. 5 shows the top-20 classes
CURVE_RUNS = 5  # training curves read the history of at most this many runs per row
DPI = 120


def per_class_frame(rows: list[ReportRow]) -> pd.DataFrame:
    """Per-class accuracy (%) of every row with runs, averaged over its runs: model, class, acc."""
    frames = []
    for row in rows:
        lines = [line for text in _texts(row, "per_class.csv") for line in _csv_rows(text)]
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


def confusion_chart(row: ReportRow, title: str, out: Path) -> Path | None:
    """Row-normalised confusion (% of each true class), summed over the row's runs."""
    import seaborn as sns

    tables = [pd.read_csv(io.StringIO(t), index_col=0) for t in _texts(row, "confusion.csv")]
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


def _csv_rows(text: str) -> list[list[str]]:
    """The data lines of a logged CSV (the csv module: pandas per file is slow over 1000 runs)."""
    return list(csv.reader(io.StringIO(text)))[1:]


def _texts(row: ReportRow, name: str) -> list[str]:
    return [t for run in row.runs if (t := run.artifact_text(name)) is not None]


def save_figure(fig, out: Path) -> Path:
    """Write `fig` as a PNG (creating folders) and free it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # legends outside the axes can defeat tight_layout; the
        warnings.simplefilter("ignore", UserWarning)  # tight bounding box below still keeps them
        fig.tight_layout()
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out

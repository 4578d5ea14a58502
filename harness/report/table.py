"""The comparison table in the paper's layout: model | Param. | GFLOPs | accuracy columns.

Each quantity shows the paper's value, ours (mean ± std over seeds, with n) and the difference.
Accuracy is video top-1 in percent on the dataset the spec actually used; a difference to the
paper is only computed when that dataset and split are the paper's (synthetic data never is).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tabulate import tabulate

from harness.analysis.complexity import MACS_NOTE
from harness.analysis.profile import views_per_video
from harness.config.spec import Spec
from harness.data.synthetic import synthetic_preset
from harness.report.rows import ReportRow

DATASET_NAMES = {"hmdb51": "HMDB-51", "ucf101": "UCF-101", "kinetics": "Kinetics"}
ACCURACY_KEY = re.compile(r"(?P<dataset>[a-z0-9]+?)(_split(?P<split>\d))?")


@dataclass(frozen=True)
class Stat:
    """A value over runs: mean, sample standard deviation (NaN for one run) and count."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        """The stat of the finite values (a NaN logged by a damaged run is left out, and n says
        how many remain); None when none is."""
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        return cls(float(np.mean(values)), std, len(values))


@dataclass(frozen=True)
class Column:
    """One quantity: its header, the paper's reference key and how to get ours."""

    title: str
    paper_key: str | None
    ours: Callable[[ReportRow], Stat | None] | None
    digits: int
    comparable: bool = True  # False: ours was measured on other data than the paper's
    per_run: bool = False  # a measured result (accuracy): its number of runs is always shown
    n_of: str = ""  # what n counts when not runs ("splits": the mean over splits)

    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.title.lower()).strip("_")


def dataset_label(spec: Spec) -> str:
    """What the accuracy was measured on; synthetic data is never named after a real dataset."""
    if spec.dataset is None:
        return ""
    preset = synthetic_preset(spec.dataset.root)
    if preset is not None:
        return f"synthetic ({preset})"
    return DATASET_NAMES.get(spec.dataset.name, spec.dataset.name)


def table_notes(spec: Spec, rows: list[ReportRow], counted: dict[str, dict]) -> str:
    """The bullet list under the table: what accuracy and GFLOPs mean, and where they came from."""
    lines = [
        "Accuracy: video top-1 (%) averaged over clips per video; ours is mean ± sample std over "
        "seeds (n runs); the mean over splits is the mean of the per-split means ± their sample "
        "std (n splits). Δ = ours − paper, shown only where the data is the paper's.",
        f"GFLOPs [paper conv.]: per clip, the paper convention (fvcore's counts plus average "
        f"pooling); {MACS_NOTE} Attn.: the inserted attention modules together, their sigmoids, "
        "gating products and max pooling uncounted (`harness profile SPEC` lists them per "
        "insertion point, under both conventions). GFLOPs/video: per clip × the test clips (or "
        "TSN segments) per video of this spec's protocol; absent for sliding windows, whose number "
        "varies with each video's length.",
    ]
    if counted:
        lines.append(
            "Param. and GFLOPs of rows without a finished run were counted by fvcore when this "
            "report was built; they do not depend on training."
        )
    if any(row.cited for row in rows):
        lines.append("Cited rows are other methods as the paper reports them, not run here.")
    if spec.dataset is not None and synthetic_preset(spec.dataset.root) is not None:
        lines.append(
            f"Our accuracy is on {dataset_label(spec)} data, not on a dataset of the paper: "
            "it is not comparable with the paper's accuracy columns."
        )
    chance = chance_note(rows)
    if chance:
        lines.append(chance)
    return "\n".join(f"- {line}" for line in lines)


def chance_note(rows: list[ReportRow]) -> str | None:
    """Chance for the rows' number of classes, and a warning where no row's mean video top-1
    reaches twice it (halfway from chance to 100 % for fewer than 3 classes): models that have
    barely learned the task say little about their modules."""
    trained = [row for row in rows if row.has_network and row.runs]
    classes = {trial.num_classes for row in trained for trial in row.trials}
    means = [float(np.mean(values)) for row in trained
             if (values := [r.metrics["video_top1"] * 100 for r in row.runs
                            if "video_top1" in r.metrics])]  # fmt: skip
    if len(classes) != 1 or not means:
        return None
    (count,) = classes
    chance = 100 / count
    note = f"Chance: 1/{count} = {_percent(chance)} % (a uniform guess among the classes)."
    bar, named = min((2 * chance, "twice chance"), ((100 + chance) / 2, "halfway to 100 %"))
    if max(means) >= bar:
        return note
    return (
        f"{note} **No row's mean reaches {named} (the highest is {_percent(max(means))} %): "
        "these models have barely learned the task, and their differences say little about "
        "their modules.** Train longer (`train.epochs`) before comparing them."
    )


def _percent(value: float) -> str:
    """One decimal, or two significant digits below 1 (chance among 400 classes is 0.25 %)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def columns(spec: Spec, rows: list[ReportRow], counted: dict[str, dict]) -> list[Column]:
    """Param., GFLOPs, our accuracy per split (and mean), then paper-only accuracy columns."""
    referenced = [k for row in rows for k in row.reference]
    found = [
        Column("Param. (M)", "params_m", _complexity("params", 1e-6, counted), 2),
        Column("GFLOPs [paper conv.]", "gflops", _complexity("gflops_paper", 1.0, counted), 3),
        Column("Attn. Param. (k)", None, _complexity("attention_params", 1e-3, counted), 2),
        Column(
            "Attn. GFLOPs [paper conv.]",
            None,
            _complexity("attention_gflops_paper", 1.0, counted),
            4,
        ),  # fmt: skip
    ]
    if spec.dataset is not None and any(_views(spec, row) for row in rows if row.has_network):
        found.append(Column("GFLOPs/video [paper conv.]", None, _per_video(spec, counted), 2))
    measured_keys: set[str] = set()
    if spec.dataset is not None:
        real = synthetic_preset(spec.dataset.root) is None
        name, label = spec.dataset.name, dataset_label(spec)
        splits = spec.dataset.splits
        for split in splits:
            key = f"{name}_split{split}"
            found.append(Column(f"{label} split {split}", key, _accuracy([split]), 1, real, True))
            measured_keys.add(key)
        if len(splits) > 1:
            found.append(
                Column(f"{label} mean", name, _accuracy(splits), 1, real, True, n_of="splits")
            )
            measured_keys.add(name)
    for key in dict.fromkeys(referenced):  # what the paper reports and this spec does not run
        if key not in ("params_m", "gflops") and key not in measured_keys:
            found.append(Column(_paper_title(key), key, None, 1, False))
    return found


def _paper_title(key: str) -> str:
    match = ACCURACY_KEY.fullmatch(key)
    if not match or match["dataset"] not in DATASET_NAMES:
        return key
    name = DATASET_NAMES[match["dataset"]]
    return f"{name} split {match['split']}" if match["split"] else name


def _complexity(metric: str, scale: float, counted: dict[str, dict]):
    def ours(row: ReportRow) -> Stat | None:
        values = [r.metrics[metric] * scale for r in row.runs if metric in r.metrics]
        if not values and row.key in counted:
            values = [counted[row.key][metric] * scale]
        return Stat.of(values)

    return ours


def _views(spec: Spec, row: ReportRow) -> int | None:
    """Test views per video of the row's model (a two-stream row: per stream)."""
    if row.cited or not row.trials:
        return None
    trial = row.trials[0]
    return views_per_video(spec, getattr(trial, "rgb", trial))


def _per_video(spec: Spec, counted: dict[str, dict]):
    """GFLOPs per clip (paper convention) × the test views per video of the spec's protocol."""
    per_clip = _complexity("gflops_paper", 1.0, counted)

    def ours(row: ReportRow) -> Stat | None:
        views, stat = _views(spec, row), per_clip(row)
        return None if views is None or stat is None else Stat.of([stat.mean * views])

    return ours


def _accuracy(splits: list[int]):
    """Video top-1 (%) over seeds for one split; for several, the mean of per-split means."""

    def ours(row: ReportRow) -> Stat | None:
        per_split = [
            [r.metrics["video_top1"] * 100 for r in row.runs_on(s) if "video_top1" in r.metrics]
            for s in splits
        ]
        if len(splits) == 1:
            return Stat.of(per_split[0])
        if not all(per_split):
            return None  # the mean over splits needs every split
        return Stat.of([float(np.mean(v)) for v in per_split])

    return ours


@dataclass(frozen=True)
class Cell:
    paper: float | None
    ours: Stat | None
    delta: float | None


def cells(row: ReportRow, column: Column) -> Cell:
    paper = row.reference.get(column.paper_key) if column.paper_key else None
    paper = float(paper) if isinstance(paper, int | float) else None
    ours = column.ours(row) if column.ours and not row.cited else None
    delta = ours.mean - paper if ours and paper is not None and column.comparable else None
    return Cell(paper, ours, delta)


def has_paper(column: Column, rows: list[ReportRow]) -> bool:
    return any(column.paper_key in row.reference for row in rows)


def table_frame(rows: list[ReportRow], cols: list[Column]) -> pd.DataFrame:
    """The CSV behind the table: one line per row, numbers unformatted."""
    records = []
    for row in rows:
        record = {"model": row.label, "state": row.state, "trial": row.key, "runs": len(row.runs)}
        for column in cols:
            cell, slug = cells(row, column), column.slug()
            record[f"{slug}_paper"] = cell.paper
            record[f"{slug}_ours"] = cell.ours.mean if cell.ours else None
            record[f"{slug}_ours_std"] = cell.ours.std if cell.ours else None
            record[f"{slug}_ours_n"] = cell.ours.n if cell.ours else 0
            record[f"{slug}_delta"] = cell.delta
        records.append(record)
    return pd.DataFrame.from_records(records)


def markdown_table(rows: list[ReportRow], cols: list[Column]) -> str:
    header, body = _layout(rows, cols, pm="±")
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


def _layout(rows: list[ReportRow], cols: list[Column], pm: str) -> tuple[list[str], list[list]]:
    header = ["Model", "State"]
    for column in cols:
        parts = (["paper"] if has_paper(column, rows) else []) + (["ours"] if column.ours else [])
        if has_paper(column, rows) and column.ours and column.comparable:
            parts.append("Δ")
        header += [f"{column.title} {part}" for part in parts]
    body = []
    for row in rows:
        line = [row.label, row.state]
        for column in cols:
            line += _formatted(row, column, has_paper(column, rows), pm)
        body.append(line)
    return header, body


def _formatted(row: ReportRow, column: Column, paper_shown: bool, pm: str) -> list[str]:
    cell = cells(row, column)
    out = []
    if paper_shown:
        out.append(_number(cell.paper, column.digits))
    if column.ours:
        out.append(_stat(cell.ours, column, pm, row))
        if paper_shown and column.comparable:
            out.append(_signed(cell.delta, column.digits))
    return out


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{round(value, digits) + 0.0:+.{digits}f}"  # no "-0.000"


def _stat(stat: Stat | None, column: Column, pm: str, row: ReportRow) -> str:
    if row.cited:
        return ""
    if stat is None:
        return "pending"
    digits, per_run = column.digits, column.per_run
    n = f"(n={stat.n}{f' {column.n_of}' if column.n_of else ''})"
    if stat.n == 1 or math.isnan(stat.std):  # one run: no spread to show, but say it is one
        return f"{stat.mean:.{digits}f} {n}" if per_run else f"{stat.mean:.{digits}f}"
    if not per_run and round(stat.std, digits) == 0:  # size and cost: equal in every run
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} {pm} {stat.std:.{digits}f} {n}"


def latex_document(title: str, rows: list[ReportRow], cols: list[Column], notes: str) -> str:
    """A standalone booktabs document (pdflatex), the table grouped by quantity."""
    header, body = _layout(rows, cols, pm="$\\pm$")
    groups = _header_groups(header)
    spec_cols = "ll" + "".join("r" * width for _, width in groups)
    top = ["", ""] + [f"\\multicolumn{{{w}}}{{c}}{{{_escape(t)}}}" for t, w in groups]
    rules, start = [], 3
    for _, width in groups:
        rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    sub = ["Model", "State"] + [_escape(h.rsplit(" ", 1)[1]).replace("Δ", "$\\Delta$")
                                for h in header[2:]]  # fmt: skip
    lines = [
        "\\documentclass{article}",
        "\\usepackage[T1]{fontenc}",
        "\\usepackage[utf8]{inputenc}",
        "\\usepackage{booktabs}",
        "\\usepackage{graphicx}",
        "\\usepackage[landscape,margin=1.5cm]{geometry}",
        "\\begin{document}",
        "\\begin{table}[ht]",
        "\\centering",
        f"\\caption{{{_escape(title)}}}",
        "\\resizebox{\\linewidth}{!}{%",
        f"\\begin{{tabular}}{{{spec_cols}}}",
        "\\toprule",
        " & ".join(top) + " \\\\",
        " ".join(rules),
        " & ".join(sub) + " \\\\",
        "\\midrule",
        *(" & ".join(_escape_cell(c) for c in line) + " \\\\" for line in body),
        "\\bottomrule",
        "\\end{tabular}}",
        "\\end{table}",
        "",
        _escape(notes),
        "\\end{document}",
        "",
    ]
    return "\n".join(lines)


def _header_groups(header: list[str]) -> list[tuple[str, int]]:
    groups: list[tuple[str, int]] = []
    for name in header[2:]:
        title = name.rsplit(" ", 1)[0]
        if groups and groups[-1][0] == title:
            groups[-1] = (title, groups[-1][1] + 1)
        else:
            groups.append((title, 1))
    return groups


LATEX_SPECIAL = {
    "\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
    "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}",
    "±": "$\\pm$", "Δ": "$\\Delta$", "×": "$\\times$", "−": "-",
}  # fmt: skip


def _escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def _escape_cell(text: str) -> str:
    """Cells already carry `$\\pm$`; escape everything around it."""
    return "$\\pm$".join(_escape(part) for part in text.split("$\\pm$"))

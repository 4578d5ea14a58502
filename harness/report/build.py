"""`harness report SPEC`: the spec's table, significance and figures, rebuilt from MLflow.

Nothing is trained: every number comes from the spec's runs (their metrics and artifacts). Rows
without a finished run render as pending; their Param. and GFLOPs are counted by fvcore on the
spot (the model is built, never trained) unless `count=False`.

This module only orchestrates: the table is `table`, the paired tests `significance`, each figure
family a module of `figures` (drawn in the order `figures.FIGURES` lists them), the README
`readme`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from harness.analysis.profile import profile_spec
from harness.config import Spec, result_keys
from harness.report.figures import FIGURES, FigureGroup
from harness.report.readme import readme
from harness.report.rows import ReportRow, group_of, report_rows
from harness.report.significance import significance, significance_markdown
from harness.report.table import (
    columns,
    dataset_label,
    latex_document,
    markdown_table,
    table_frame,
    table_notes,
)
from harness.tracking import Store
from registry import ConfigError


@dataclass
class Report:
    """What a report wrote, and how its rows stand."""

    out: Path
    rows: list[ReportRow]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # figures that could not be drawn, and why
    seconds: float = 0.0

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows if row.state == state)


def build_report(
    spec: Spec, store: Store, out: Path, *, count: bool = True, videos: int = 3
) -> Report:
    """Write the spec's report into `out` from the runs in `store`, replacing the previous build
    there (see `clean_folder`)."""
    started = time.perf_counter()
    clean_folder(out)
    report = Report(out, report_rows(spec, store.latest_runs(result_keys(spec))))
    table = _write_table(report, spec, count=count)
    significance_md = _write_significance(report)
    if dataset_label(spec):  # a profile-only spec has no runs to draw
        _draw_figures(report, spec, videos)
    text = readme(spec, out, report.rows, report.files, report.notes,
                  table=table, significance_md=significance_md)  # fmt: skip
    report.files.append(_write(out / "README.md", text))
    report.seconds = time.perf_counter() - started
    return report


MARKER = ".harness-report"  # in every report folder: what `clean_folder` may empty


def clean_folder(out: Path) -> None:
    """`out` made empty for a new build: a folder of an earlier report (it holds `MARKER`) is
    cleared, so no figure of a model no longer in the spec stays beside the new ones; any other
    non-empty folder is refused (`--out` named a folder that is not a report's)."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(
                f"--out {out}: that folder holds files that are not a harness report (no "
                f"{MARKER} in it); a report replaces its folder's contents, so give a new or "
                "empty folder."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `harness report`; the next build replaces this folder\n")


def _write_table(report: Report, spec: Spec, *, count: bool) -> str:
    """table.md, table.tex and table.csv; returns the Markdown table with its notes."""
    rows, out = report.rows, report.out
    counted = _count_pending(spec, rows) if count else {}
    cols = columns(spec, rows, counted)
    title = spec.description or spec.name
    notes = table_notes(spec, rows, counted)
    table_md = markdown_table(rows, cols)
    report.files += [
        _write(out / "table.md", f"{title}\n\n{table_md}\n\n{notes}\n"),
        _write(out / "table.tex", latex_document(title, rows, cols, notes)),
        _write(out / "table.csv", table_frame(rows, cols).to_csv(index=False)),
    ]
    return f"{table_md}\n\n{notes}"


def _write_significance(report: Report) -> str:
    """significance.csv and .md when any row has a baseline run to pair with; the Markdown."""
    comparisons = significance(report.rows)
    if not comparisons:
        return ""
    frame = pd.DataFrame.from_records(comparisons)
    markdown = significance_markdown(frame)
    report.files += [
        _write(report.out / "significance.csv", frame.to_csv(index=False)),
        _write(report.out / "significance.md", markdown + "\n"),
    ]
    return markdown


def _draw_figures(report: Report, spec: Spec, videos: int) -> None:
    """Every family of `FIGURES`: the per-group families group by group, then the per-row ones
    row by row."""
    data, out = dataset_label(spec), report.out / "figures"
    groups: dict[tuple, list[ReportRow]] = {}
    for row in report.rows:
        if not row.cited:
            groups.setdefault(group_of(row), []).append(row)
    sources = {
        "group": list(groups.values()),
        "row": [[row] for row in report.rows if row.runs],
    }
    for per, members in sources.items():
        families = [family for family in FIGURES if family.per == per]
        for rows in members:
            group = FigureGroup(spec, rows, data, out, videos, report.notes)
            for family in families:
                report.files += family.draw(group)


def _count_pending(spec: Spec, rows: list[ReportRow]) -> dict[str, dict]:
    """Params and GFLOPs (paper convention) of rows without runs, counted by fvcore now."""
    pending = [row for row in rows if row.has_network and not row.runs]
    if not pending:
        return {}
    profiled = profile_spec(replace(spec, trials=tuple(row.trials[0] for row in pending)))
    counted = {
        row.key: {"params": found.params, "gflops_paper": found.gflops_paper}
        for row, found in zip(pending, profiled, strict=True)
    }
    for row in rows:  # a pending two-stream row costs what its two streams cost together
        if not row.cited and not row.has_network and not row.runs:
            pair = row.trials[0]
            streams = [replace(t, split=None, seed=None).key for t in (pair.rgb, pair.flow)]
            if all(key in counted for key in streams):
                counted[row.key] = {
                    name: sum(counted[key][name] for key in streams)
                    for name in ("params", "gflops_paper")
                }
    return counted


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

"""`harness report SPEC`: the spec's table, comparisons and figures, rebuilt from MLflow.

Nothing is trained: every number comes from the spec's runs (their metrics and artifacts). Rows
without a finished run render as pending; their Param. and GFLOPs are counted by fvcore on the
spot (the model is built, never trained) unless `count=False`.

This module only orchestrates: the table is `table`, the comparisons over training runs
`comparisons`, the per-video (test-set noise) tests `per_video`, each figure family a module
of `figures` (drawn in the order `figures.FIGURES` lists them), the README `readme`. The finished
folder is logged to the spec's MLflow experiment as its report run (`Store.publish_report`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from harness.analysis.profile import profile_spec
from harness.config import Spec, result_keys
from harness.report.comparisons import (
    Outcomes,
    comparisons_frame,
    comparisons_markdown,
    run_comparisons,
    video_outcomes,
)
from harness.report.figures import FIGURES, FigureGroup
from harness.report.per_video import per_video_comparisons, per_video_markdown
from harness.report.readme import readme
from harness.report.rows import ReportRow, group_of, report_rows
from harness.report.table import (
    columns,
    dataset_label,
    latex_document,
    markdown_table,
    table_frame,
    table_notes,
)
from harness.tracking import RunRecord, Store
from registry import ConfigError


@dataclass
class Report:
    """What a report wrote, and how its rows stand."""

    out: Path
    rows: list[ReportRow]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # figures that could not be drawn, and why
    seconds: float = 0.0
    comparisons: list[dict] = field(default_factory=list)  # over runs, one per attention row
    summary_run: str = ""  # the MLflow run the report was logged to

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows if row.state == state)


def build_report(
    spec: Spec,
    store: Store | None,
    out: Path,
    *,
    count: bool = True,
    videos: int = 3,
    min_effect: float | None = None,
    runs: dict[str, RunRecord] | None = None,
    command: str | None = None,
) -> Report:
    """Write the spec's report into `out` from the runs in `store`, replacing the previous build
    there (see `clean_folder`), and log it to the store as the spec's report run (None: no store
    exists yet, and none is created for a report of no runs). `min_effect`
    (pp): the Δ the power advice is computed for (default: the spec's `report.min_effect`;
    none: no advice);
    `runs`: the latest run of each trial, when the caller has read them already; `command`: the
    command line that builds it (the README says how to rebuild it; default `harness report
    SPEC`)."""
    started = time.perf_counter()
    if runs is None:
        runs = store.latest_runs(result_keys(spec)) if store is not None else {}
    clean_folder(out)
    report = Report(out, report_rows(spec, runs))
    table = _write_table(report, spec, count=count)
    outcomes = video_outcomes(report.rows)
    planned_effect = min_effect if min_effect is not None else spec.report.min_effect
    comparisons_md = _write_comparisons(report, outcomes, planned_effect, spec.report.contrasts)
    per_video_md = _write_per_video(report, outcomes)
    if dataset_label(spec):  # a profile-only spec has no runs to draw
        _draw_figures(report, spec, videos, outcomes)
    text = readme(spec, out, report.rows, report.files, report.notes, table=table,
                  comparisons_md=comparisons_md, per_video_md=per_video_md,
                  command=command or f"harness report {spec.path}")  # fmt: skip
    report.files.append(_write(out / "README.md", text))
    if store is not None:
        report.summary_run = store.publish_report(out, _summary_tags(report))
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


def _write_comparisons(
    report: Report, outcomes: Outcomes, min_effect: float | None, contrasts: list[list[str]]
) -> str:
    """comparisons.csv and .md (over training runs) when any row has a baseline or a planned
    contrast."""
    report.comparisons = run_comparisons(
        report.rows, outcomes, min_effect=min_effect, contrasts=contrasts
    )
    if not report.comparisons:
        return ""
    markdown = comparisons_markdown(report.comparisons, min_effect=min_effect)
    report.files += [
        _write(
            report.out / "comparisons.csv",
            comparisons_frame(report.comparisons).to_csv(index=False),
        ),
        _write(report.out / "comparisons.md", markdown + "\n"),
    ]
    return markdown


def _write_per_video(report: Report, outcomes: Outcomes) -> str:
    """per_video_tests.csv and .md: each run pair on its test videos (test-set noise only)."""
    records = per_video_comparisons(report.rows, outcomes)
    if not records:
        return ""
    frame = pd.DataFrame.from_records(records)
    markdown = per_video_markdown(frame)
    report.files += [
        _write(report.out / "per_video_tests.csv", frame.to_csv(index=False)),
        _write(report.out / "per_video_tests.md", markdown + "\n"),
    ]
    return markdown


def _summary_tags(report: Report) -> dict[str, str]:
    """What the report run shows in the MLflow UI's run list without opening it."""
    shown = [c for c in report.comparisons if c["difference_shown"]]
    return {
        "report.rows_done": str(report.count("done")),
        "report.runs": str(sum(len(row.runs) for row in report.rows)),
        "report.comparisons": str(len(report.comparisons)),
        "report.differences_shown": "; ".join(
            f"{c['model']}: {c['difference']:+.1f} pp" for c in shown
        )
        or "none",
    }


def _draw_figures(report: Report, spec: Spec, videos: int, outcomes: Outcomes) -> None:
    """Every family of `FIGURES`: the per-spec families, then the per-group families group by
    group, then the per-row ones row by row."""
    data, out = dataset_label(spec), report.out / "figures"
    groups: dict[tuple, list[ReportRow]] = {}
    for row in report.rows:
        if not row.cited:
            groups.setdefault(group_of(row), []).append(row)
    sources = {
        "spec": [[row for row in report.rows if not row.cited]],
        "group": list(groups.values()),
        "row": [[row] for row in report.rows if row.runs],
    }
    for per, members in sources.items():
        families = [family for family in FIGURES if family.per == per]
        for rows in members:
            group = FigureGroup(spec, rows, data, out, videos, report.notes, outcomes,
                                report.comparisons)  # fmt: skip
            for family in families:
                report.files += family.draw(group)


def _count_pending(spec: Spec, rows: list[ReportRow]) -> dict[str, dict]:
    """Params and GFLOPs (paper convention), the attention modules' included, of rows without
    runs or whose runs predate the attention ledger, counted by fvcore now."""
    pending = [row for row in rows if row.has_network and _uncounted(row)]
    if not pending:
        return {}
    profiled = profile_spec(replace(spec, trials=tuple(row.trials[0] for row in pending)))
    counted = {
        row.key: {
            "params": found.params,
            "gflops_paper": found.gflops_paper,
            "attention_params": found.attention_params,
            "attention_gflops_paper": found.attention_gflops_paper,
        }
        for row, found in zip(pending, profiled, strict=True)
    }
    for row in rows:  # a pending two-stream row costs what its two streams cost together
        if not row.cited and not row.has_network and _uncounted(row):
            pair = row.trials[0]
            streams = [replace(t, split=None, seed=None).key for t in (pair.rgb, pair.flow)]
            if all(key in counted for key in streams):
                counted[row.key] = {
                    name: sum(counted[key][name] for key in streams) for name in counted[streams[0]]
                }
    return counted


def _uncounted(row: ReportRow) -> bool:
    """No run of the row logged its complexity with the attention ledger (none ran, or its runs
    are older than the ledger)."""
    return not row.runs or any("attention_params" not in run.metrics for run in row.runs)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

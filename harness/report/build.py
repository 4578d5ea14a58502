"""`harness report SPEC`: the spec's table, significance and charts, rebuilt from MLflow.

Nothing is trained: every number comes from the spec's runs (their metrics and artifacts). Rows
without a finished run render as pending; their Param. and GFLOPs are counted by fvcore on the
spot (the model is built, never trained) unless `count=False`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness.analysis.complexity import MACS_NOTE
from harness.analysis.profile import profile_spec
from harness.analysis.significance import PairedComparison, compare_runs
from harness.config import Spec, result_keys
from harness.report.figures import charts as figures
from harness.report.figures import trained as visualise
from harness.report.rows import ReportRow, baseline_of, group_of, report_rows
from harness.report.table import (
    columns,
    dataset_label,
    latex_document,
    markdown_table,
    table_frame,
)
from harness.tracking import RunRecord, Store
from harness.tracking.schema import per_video_scores


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
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(spec, store.latest_runs(result_keys(spec)))
    report = Report(out, rows)
    counted = _count_pending(spec, rows) if count else {}
    cols = columns(spec, rows, counted)
    title = spec.description or spec.name
    data = dataset_label(spec)
    notes = _table_notes(spec, rows, counted)
    table_md = markdown_table(rows, cols)
    report.files += [
        _write(out / "table.md", f"{title}\n\n{table_md}\n\n{notes}\n"),
        _write(out / "table.tex", latex_document(title, rows, cols, notes)),
        _write(out / "table.csv", table_frame(rows, cols).to_csv(index=False)),
    ]
    comparisons = significance(spec, rows)
    significance_md = ""
    if comparisons:
        frame = pd.DataFrame.from_records(comparisons)
        significance_md = _significance_markdown(frame)
        report.files += [
            _write(out / "significance.csv", frame.to_csv(index=False)),
            _write(out / "significance.md", significance_md + "\n"),
        ]
    if data:
        _charts(report, spec, rows, data, videos)
    readme = _readme(spec, report, f"{table_md}\n\n{notes}", significance_md)
    report.files.append(_write(out / "README.md", readme))
    report.seconds = time.perf_counter() - started
    return report


def significance(spec: Spec, rows: list[ReportRow]) -> list[dict]:
    """Every attention row against its baseline, per split and seed both finished."""
    found = []
    for row in rows:
        baseline = baseline_of(row, rows)
        if baseline is None:
            continue
        baseline_runs = {_split_seed(baseline, r): r for r in baseline.runs}
        for run in row.runs:
            split, seed = _split_seed(row, run)
            paired = baseline_runs.get((split, seed))
            result = _compare(run, paired) if paired is not None else None
            if result is not None:
                found.append(_significance_record(row, baseline, split, seed, result))
    return found


def _compare(run: RunRecord, baseline: RunRecord) -> PairedComparison | None:
    ours, theirs = per_video_scores(run), per_video_scores(baseline)
    return compare_runs(ours, theirs) if ours and theirs else None


def _split_seed(row: ReportRow, run: RunRecord) -> tuple[int | None, int | None]:
    trial = row.trial_of(run)
    return trial.split, trial.seed


def _significance_record(row, baseline, split, seed, result: PairedComparison) -> dict:
    return {
        "model": row.name,
        "baseline": baseline.name,
        "split": split,
        "seed": seed,
        "videos": result.videos,
        "accuracy": 100 * result.accuracy,
        "baseline_accuracy": 100 * result.baseline_accuracy,
        "difference": 100 * result.difference,
        "ci95_low": 100 * result.ci_low,
        "ci95_high": 100 * result.ci_high,
        "only_model_right": result.only_model,
        "only_baseline_right": result.only_baseline,
        "mcnemar_p": result.p_value,
    }


def _significance_markdown(frame: pd.DataFrame) -> str:
    shown = frame.assign(
        difference=[
            f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
            for d, lo, hi in zip(frame.difference, frame.ci95_low, frame.ci95_high, strict=True)
        ],
        mcnemar_p=[f"{p:.3g}" for p in frame.mcnemar_p],
        accuracy=[f"{a:.1f}" for a in frame.accuracy],
        baseline_accuracy=[f"{a:.1f}" for a in frame.baseline_accuracy],
    ).drop(columns=["ci95_low", "ci95_high"])
    headers = ["model", "baseline", "split", "seed", "videos", "acc. (%)", "baseline (%)",
               "Δ (pp) [95% CI]", "n10", "n01", "McNemar p"]  # fmt: skip
    return (
        tabulate(
            shown.to_numpy().tolist(), headers=headers, tablefmt="github", disable_numparse=True
        )  # fmt: skip
        + "\n\nΔ: video top-1 of the model minus its baseline on the same test videos, in "
        "percentage points, with a 95% percentile bootstrap interval over videos (10,000 "
        "resamples). n10: videos only the model classifies correctly; n01: only the baseline. "
        "McNemar p: exact two-sided binomial test on n10 vs n01."
    )


def _count_pending(spec: Spec, rows: list[ReportRow]) -> dict[str, dict]:
    """Params and GFLOPs (paper convention) of rows without runs, counted by fvcore now."""
    pending = [row for row in rows if not row.cited and not row.runs and _is_trial(row)]
    if not pending:
        return {}
    profiled = profile_spec(replace(spec, trials=tuple(row.trials[0] for row in pending)))
    counted = {
        row.key: {"params": found.params, "gflops_paper": found.gflops_paper}
        for row, found in zip(pending, profiled, strict=True)
    }
    for row in rows:  # a pending two-stream row costs what its two streams cost together
        if not _is_trial(row) and not row.runs:
            pair = row.trials[0]
            streams = [replace(t, split=None, seed=None).key for t in (pair.rgb, pair.flow)]
            if all(key in counted for key in streams):
                counted[row.key] = {
                    name: sum(counted[key][name] for key in streams)
                    for name in ("params", "gflops_paper")
                }
    return counted


def _is_trial(row: ReportRow) -> bool:
    """False for fused two-stream rows, which have no network of their own to build."""
    return row.fields.get("stream") != "two-stream"


def _charts(report: Report, spec: Spec, rows: list[ReportRow], data: str, videos: int) -> None:
    out = report.out / "figures"
    groups: dict[tuple, list[ReportRow]] = {}
    for row in rows:
        if not row.cited:
            groups.setdefault(group_of(row), []).append(row)
    for members in groups.values():
        name = _slug(members[0].name)
        drawn = [
            figures.per_class_chart(
                members,
                f"Per-class video accuracy, top classes: {data}",
                out / f"per_class_{name}.png",
            ),  # fmt: skip
            figures.curves_chart(members, f"Training curves: {data}", out / f"curves_{name}.png"),
        ]
        report.files += [path for path in drawn if path is not None]
        if any(_is_trial(row) for row in members):
            _model_figures(report, spec, members, data, videos, out / name)
    for row in rows:
        if row.runs:
            path = figures.confusion_chart(
                row, f"Confusion: {row.name} on {data}", out / f"confusion_{_slug(row.key)}.png"
            )
            report.files += [path] if path is not None else []


def _model_figures(report, spec, members, data, videos, prefix: Path) -> None:
    """Fig. 7 and Fig. 8 for one group, from the rows that saved their weights."""
    trained = [
        (row, model)
        for row in members
        if _is_trial(row) and (model := visualise.trained_model(row))
    ]
    if not trained:
        if not any(row.runs for row in members):
            return  # nothing has run yet: nothing to say
        report.notes.append(
            f"{members[0].name}: no run saved its weights (set `train.save_checkpoint: true`), "
            "so Fig. 7 (temporal attention) and Fig. 8 (Grad-CAM) were not drawn."
        )
        return
    first = trained[0][0]
    shape = first.trials[0].input_shape(first.trials[0].resolve())  # (C, T, H, W) or (C, H, W)
    if shape[0] != 3 or len(shape) != 4:
        report.notes.append(f"{first.name}: Fig. 7 and 8 are drawn for 3D RGB models only.")
        return
    clips = visualise.chosen_clips(spec, first, videos)
    stem = prefix.name
    for row, model in trained:
        path = visualise.temporal_chart(
            model, clips, f"EAM-T temporal weights: {row.name} on {data}",
            prefix.parent / f"temporal_{_slug(row.key)}.png",
        )  # fmt: skip
        report.files += [path] if path is not None else []
    path = visualise.grad_cam_chart(
        [(row.name, model) for row, model in trained], clips,
        f"Grad-CAM on the middle frame; P = softmax score of the true class; {data}",
        prefix.parent / f"gradcam_{stem}.png",
    )  # fmt: skip
    report.files += [path] if path is not None else []


def _table_notes(spec: Spec, rows: list[ReportRow], counted: dict) -> str:
    lines = [
        "Accuracy: video top-1 (%) averaged over clips per video; ours is mean ± sample std over "
        "seeds (n runs). Δ = ours − paper, shown only where the data is the paper's.",
        f"GFLOPs: the paper convention; {MACS_NOTE}",
    ]
    if counted:
        lines.append(
            "Param. and GFLOPs of rows without a finished run were counted by fvcore when this "
            "report was built; they do not depend on training."
        )
    if any(row.cited for row in rows):
        lines.append("Cited rows are other methods as the paper reports them, not run here.")
    if spec.dataset is not None and spec.dataset.root.startswith("synthetic:"):
        lines.append(
            f"Our accuracy is on {dataset_label(spec)} data, not on a dataset of the paper: "
            "it is not comparable with the paper's accuracy columns."
        )
    return "\n".join(f"- {line}" for line in lines)


def _readme(spec: Spec, report: Report, table: str, significance_md: str) -> str:
    runs = [run for row in report.rows for run in row.runs]
    devices = sorted({run.tags.get("device", "unknown") for run in runs})
    commits = sorted({run.tags.get("git_commit", "unknown")[:12] for run in runs})
    data = dataset_label(spec) or "none (a profile-only spec: complexity only, nothing trained)"
    splits = f", splits {spec.dataset.splits}" if spec.dataset else ""
    states = {s: report.count(s) for s in ("done", "pending", "cited")}
    partial = len(report.rows) - sum(states.values())
    lines = [
        f"# {spec.description or spec.name}",
        "",
        f"Built by `harness report {spec.path}` from the MLflow experiment `{spec.name}`. "
        "Rebuild it with the same command; nothing here is edited by hand.",
        "",
        f"- Dataset actually used: **{data}**{splits}.",
        f"- Rows: {states['done']} done, {partial} partly run, {states['pending']} pending, "
        f"{states['cited']} cited.",
        f"- Hardware of the runs: {', '.join(devices) or 'no runs yet'}.",
        f"- Code commit of the runs: {', '.join(commits) or 'no runs yet'}.",
        "",
        table,
        "",
        *(["## Against the baseline", "", significance_md, ""] if significance_md else []),
        "## Files",
        "",
        *(
            f"- [{p.relative_to(report.out)}]({p.relative_to(report.out)})"
            for p in report.files
            if p.parent != report.out or p.suffix != ".png"
        ),  # fmt: skip
    ]
    pictures = [p for p in report.files if p.suffix == ".png"]
    if pictures:
        lines += ["", "## Figures", ""]
        for path in pictures:
            relative = path.relative_to(report.out)
            lines += [f"### {_figure_title(path.stem)}", "", f"![{path.stem}]({relative})", ""]
    if report.notes:
        lines += ["", "## Not drawn", "", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"


def _figure_title(stem: str) -> str:
    kind, _, subject = stem.partition("_")
    names = {
        "per": "Per-class accuracy (EAM Fig. 5)", "confusion": "Confusion matrix",
        "curves": "Training curves", "temporal": "Temporal attention weights (EAM Fig. 7)",
        "gradcam": "Grad-CAM (EAM Fig. 8)",
    }  # fmt: skip
    return f"{names.get(kind, kind)}: {subject.removeprefix('class_')}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "model"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

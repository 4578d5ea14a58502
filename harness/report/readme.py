"""The report's README.md: what was run where, the tables, every file and every figure."""

from __future__ import annotations

from pathlib import Path

from harness.config import Spec
from harness.report.figures import FIGURES
from harness.report.rows import ReportRow
from harness.report.table import dataset_label


def readme(
    spec: Spec,
    out: Path,
    rows: list[ReportRow],
    files: list[Path],
    notes: list[str],
    *,
    table: str,
    comparisons_md: str,
    per_video_md: str,
    command: str,
) -> str:
    """The README of a report in `out` that wrote `files` (`notes`: figures not drawn), built by
    the command line `command`."""
    lines = [
        *_header(spec, rows, command),
        "",
        table,
        "",
        *(
            ["## Comparisons over training runs", "", comparisons_md, ""] if comparisons_md else []
        ),  # fmt: skip
        *(
            ["## Test-set noise only, per run pair", "", _shortened(per_video_md), ""]
            if per_video_md
            else []
        ),  # fmt: skip
        "## Files",
        "",
        *(
            f"- [{p.relative_to(out)}]({p.relative_to(out)})"
            for p in files
            if p.parent != out or p.suffix != ".png"
        ),  # fmt: skip
        *_figures(out, [p for p in files if p.suffix == ".png"]),
    ]
    if notes:
        lines += ["", "## Not drawn", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


PER_VIDEO_ROWS_SHOWN = 30  # a longer per-video table stays in per_video_tests.md only


def _shortened(per_video_md: str) -> str:
    """The per-video table, or, past `PER_VIDEO_ROWS_SHOWN` rows, its legend and a link."""
    table, _, legend = per_video_md.partition("\n\n")
    rows = table.count("\n") - 1
    if rows <= PER_VIDEO_ROWS_SHOWN:
        return per_video_md
    return f"{rows} run pairs: see [per_video_tests.md](per_video_tests.md).\n\n{legend}"


def _header(spec: Spec, rows: list[ReportRow], command: str) -> list[str]:
    """Title, provenance, the dataset actually used, row states, hardware and code commit."""
    runs = [run for row in rows for run in row.runs]
    devices = sorted({run.tags.get("device", "unknown") for run in runs})
    commits = sorted({run.tags.get("git_commit", "unknown")[:12] for run in runs})
    data = dataset_label(spec) or "none (a profile-only spec: complexity only, nothing trained)"
    splits = f", splits {spec.dataset.splits}" if spec.dataset else ""
    states = {s: sum(1 for row in rows if row.state == s) for s in ("done", "pending", "cited")}
    partial = len(rows) - sum(states.values())
    return [
        f"# {spec.description or spec.name}",
        "",
        f"Built by `{command}` from the MLflow experiment `{spec.name}`. "
        "Rebuild it with the same command; nothing here is edited by hand.",
        "",
        f"- Dataset actually used: **{data}**{splits}.",
        f"- Rows: {states['done']} done, {partial} partly run, {states['pending']} pending, "
        f"{states['cited']} cited.",
        f"- Hardware of the runs: {', '.join(devices) or 'no runs yet'}.",
        f"- Code commit of the runs: {', '.join(commits) or 'no runs yet'}"
        + (
            " (runs of different code versions: a difference between rows may come from the "
            "code, not the module)."
            if len(commits) > 1
            else "."
        ),
        *_training(rows),
    ]


def _training(rows: list[ReportRow]) -> list[str]:
    """How each row's runs were actually trained: epochs, batch size and learning rate."""
    lines = []
    for row in rows:
        used = sorted({_recipe(run) for run in row.runs})
        if used:
            lines.append(f"  - {row.label.strip() or row.key}: {'; '.join(used)}")
    return ["- Training actually run, per row:", *lines] if lines else []


def _recipe(run) -> str:
    epochs = run.metrics.get("epochs_trained")
    batch, lr = run.tags.get("train_batch_size"), run.tags.get("train_lr")
    if epochs is None or batch is None:
        return "not recorded (a run of an older version)"
    return f"{epochs:.0f} epochs, batch {batch}, lr {lr}"


def _figures(out: Path, pictures: list[Path]) -> list[str]:
    """A section per PNG, headed by its figure family's title and subject."""
    if not pictures:
        return []
    lines = ["", "## Figures", ""]
    for path in pictures:
        relative = path.relative_to(out)
        lines += [f"### {_figure_title(path.stem)}", "", f"![{path.stem}]({relative})", ""]
    return lines


def _figure_title(stem: str) -> str:
    """`gradcam_3d_resnet_10` → `Grad-CAM (EAM Fig. 8): 3d_resnet_10`."""
    for family in FIGURES:
        if stem.startswith(f"{family.kind}_"):
            return f"{family.title}: {stem.removeprefix(f'{family.kind}_')}"
    kind, _, subject = stem.partition("_")
    return f"{kind}: {subject}"

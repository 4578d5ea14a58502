"""Each attention row against its baseline (same backbone, no attention), per split and seed:
the paired accuracy difference on the test videos both runs scored, with a bootstrap interval,
and McNemar's exact test (`harness.analysis.significance`)."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from harness.analysis.significance import PairedComparison, compare_runs
from harness.report.rows import ReportRow, baseline_of
from harness.tracking import RunRecord
from harness.tracking.schema import per_video_scores

HEADERS = ["model", "baseline", "split", "seed", "videos", "acc. (%)", "baseline (%)",
           "Δ (pp) [95% CI]", "n10", "n01", "McNemar p"]  # fmt: skip
LEGEND = (
    "Δ: video top-1 of the model minus its baseline on the same test videos, in "
    "percentage points, with a 95% percentile bootstrap interval over videos (10,000 "
    "resamples). n10: videos only the model classifies correctly; n01: only the baseline. "
    "McNemar p: exact two-sided binomial test on n10 vs n01."
)


def significance(rows: list[ReportRow]) -> list[dict]:
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
                found.append(_record(row, baseline, split, seed, result))
    return found


def significance_markdown(frame: pd.DataFrame) -> str:
    """The records of `significance` as a GitHub table, with the legend under it."""
    shown = frame.assign(
        difference=[
            f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
            for d, lo, hi in zip(frame.difference, frame.ci95_low, frame.ci95_high, strict=True)
        ],
        mcnemar_p=[f"{p:.3g}" for p in frame.mcnemar_p],
        accuracy=[f"{a:.1f}" for a in frame.accuracy],
        baseline_accuracy=[f"{a:.1f}" for a in frame.baseline_accuracy],
    ).drop(columns=["ci95_low", "ci95_high"])
    table = tabulate(
        shown.to_numpy().tolist(), headers=HEADERS, tablefmt="github", disable_numparse=True
    )
    return f"{table}\n\n{LEGEND}"


def _compare(run: RunRecord, baseline: RunRecord) -> PairedComparison | None:
    ours, theirs = per_video_scores(run), per_video_scores(baseline)
    return compare_runs(ours, theirs) if ours and theirs else None


def _split_seed(row: ReportRow, run: RunRecord) -> tuple[int | None, int | None]:
    trial = row.trial_of(run)
    return trial.split, trial.seed


def _record(row, baseline, split, seed, result: PairedComparison) -> dict:
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

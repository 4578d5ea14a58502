"""Test-set noise only: each attention run against its baseline run of the same split and seed,
both trained models held fixed. The paired accuracy difference on the test videos both runs
scored, with a bootstrap interval over videos, and McNemar's exact test
(`harness.analysis.significance`).

These numbers say how much the test videos alone could move one comparison; they leave out
training variance (a second seed moves Δ by more), so the report never draws a conclusion from
them: `harness.report.comparisons` does that, over runs.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from harness.analysis.significance import PairedComparison, compare
from harness.report.comparisons import Outcomes, paired_runs
from harness.report.rows import ReportRow, baseline_of

HEADERS = ["model", "baseline", "split", "seed", "videos", "acc. (%)", "baseline (%)",
           "Δ (pp) [95% CI, videos only]", "n10", "n01", "McNemar p"]  # fmt: skip
LEGEND = (
    "Test-set noise only: each row holds one trained model and one trained baseline fixed and "
    "asks how much the choice of test videos could move their difference. Δ: video top-1 of the "
    "model minus its baseline on the same test videos, in percentage points, with a 95% "
    "percentile bootstrap interval over videos (10,000 resamples). n10: videos only the model "
    "classifies correctly; n01: only the baseline. McNemar p: exact two-sided binomial test on "
    "n10 vs n01. None of this includes training variance (another seed of the same model moves "
    "Δ by more): it is no evidence that one module is better; the comparison over runs above is."
)


def per_video_comparisons(rows: list[ReportRow], outcomes: Outcomes) -> list[dict]:
    """Every attention run against its baseline run of the same split and seed."""
    found = []
    for row in rows:
        baseline = baseline_of(row, rows)
        if baseline is None:
            continue
        for pair in paired_runs(row, baseline, outcomes):
            result = compare(pair.model, pair.baseline)
            found.append(_record(row, baseline, pair.split, pair.seed, result))
    return found


def per_video_markdown(frame: pd.DataFrame) -> str:
    """The records of `per_video_comparisons` as a GitHub table, with the legend under it."""
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

"""Each attention row against its baseline over training runs (`harness.analysis.replication`).

A row's runs are paired with its baseline's by split and seed; each pair is compared on the test
videos both runs scored. The family for Holm's correction is every comparison of the spec that
has two runs or more. A row with one run gets no test: its training variance is unknown, and the
report says so instead of quoting the per-video test, which holds each trained model fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tabulate import tabulate

from harness.analysis.replication import (
    ALPHA,
    ASO_THRESHOLD,
    EXACT_UP_TO,
    MONTE_CARLO_FLIPS,
    PairedRun,
    RunComparison,
    compare_over_runs,
    holm,
    runs_for_power,
)
from harness.analysis.significance import correctness, on_shared_videos
from harness.report.rows import ReportRow, baseline_of
from harness.tracking import RunRecord
from harness.tracking.schema import per_video_scores

Outcomes = dict[str, dict[str, int]]  # run id → video → 1 if classified right
ASO_MIN_RUNS = 3  # fewer: ε_min is shown blank (from 2 runs it is mostly chance)

HEADERS = ["model", "baseline", "runs", "acc. (%)", "baseline (%)", "Δ (pp) [95% CI]",
           "Δ per run (pp)", "sign-flip p", "Holm p", "ASO ε_min ↑ / ↓", "verdict",
           "runs for 80% power"]  # fmt: skip


def video_outcomes(rows: list[ReportRow]) -> Outcomes:
    """Per-video correctness of every run of the rows that logged its per-video scores."""
    found: Outcomes = {}
    for row in rows:
        for run in row.runs:
            scores = per_video_scores(run)
            if scores:
                found[run.run_id] = correctness(scores)
    return found


def paired_runs(row: ReportRow, baseline: ReportRow, outcomes: Outcomes) -> list[PairedRun]:
    """The row's runs paired with the baseline's made on the same split and seed, each on the
    videos both scored (pairs without per-video scores or shared videos are left out)."""
    theirs = {_split_seed(baseline, run): run for run in baseline.runs}
    pairs = []
    for run in row.runs:
        split, seed = _split_seed(row, run)
        other = theirs.get((split, seed))
        if other is None or run.run_id not in outcomes or other.run_id not in outcomes:
            continue
        paired = on_shared_videos(outcomes[run.run_id], outcomes[other.run_id])
        if paired is not None:
            pairs.append(PairedRun(split, seed, *paired))
    return pairs


def run_comparisons(
    rows: list[ReportRow], outcomes: Outcomes, *, min_effect: float | None = None
) -> list[dict]:
    """A record per attention row with paired baseline runs; `min_effect` (pp) is the Δ the
    power advice is computed for (default: the observed Δ)."""
    found = []
    for row in rows:
        baseline = baseline_of(row, rows)
        pairs = paired_runs(row, baseline, outcomes) if baseline is not None else []
        if pairs:
            found.append((row, baseline, compare_over_runs(pairs)))
    adjusted = holm([result.p_value for _, _, result in found])
    family = sum(1 for _, _, result in found if result.replicated)
    return [
        _record(row, baseline, result, holm_p, family, min_effect)
        for (row, baseline, result), holm_p in zip(found, adjusted, strict=True)
    ]


def _record(row, baseline, result: RunComparison, holm_p: float, family: int, min_effect):
    effect = min_effect / 100 if min_effect is not None else abs(result.mean_difference)
    needed = runs_for_power(effect, result.difference_sd, ALPHA / max(family, 1))
    return {
        "model": row.name,
        "baseline": baseline.name,
        "runs": result.runs,
        "accuracy": 100 * float(np.mean(result.model_accuracies)),
        "baseline_accuracy": 100 * float(np.mean(result.baseline_accuracies)),
        "difference": 100 * result.mean_difference,
        "ci95_low": 100 * result.ci_low,
        "ci95_high": 100 * result.ci_high,
        "run_differences": " ".join(f"{100 * d:+.1f}" for d in result.differences),
        "difference_sd": 100 * result.difference_sd,
        "sign_flip_p": result.p_value,
        "smallest_p": result.smallest_p,
        "holm_p": holm_p,
        "family": family,
        "aso_model_better": result.aso_model_better,
        "aso_baseline_better": result.aso_baseline_better,
        "difference_shown": bool(holm_p < ALPHA),
        "power_effect": 100 * effect,
        "runs_for_power": needed,
        "verdict": verdict(result, holm_p, family),
    }


def verdict(result: RunComparison, holm_p: float, family: int) -> str:
    """What the comparison shows, in words a reader cannot over-read. n runs cannot give a
    p-value below 2/2^n: where even that misses α the test cannot show anything, said as such,
    not as "no difference". Holm's steps need p below α/m for the smallest of a family of m,
    up to α for the largest, so a comparison whose smallest p lies between is "not shown", and
    the reason is given."""
    if not result.replicated:
        return "unknown: 1 run each, training variance not measured"
    if holm_p < ALPHA:
        direction = "better" if result.mean_difference > 0 else "worse"
        return f"{direction} than the baseline (Holm p < {ALPHA})"
    floor = f"{result.runs} runs give p ≥ {result.smallest_p:.3g}"
    if result.smallest_p >= ALPHA:
        return f"no test possible: {floor}"
    if result.smallest_p * family >= ALPHA:
        return (
            f"no difference shown ({floor}; Holm over {family} needs p < {ALPHA / family:.3g} "
            f"to {ALPHA})"
        )
    return "no difference shown"


def power_advice(record: dict) -> str:
    """The runs needed for 80 % power, for comparisons that did not show a difference."""
    if record["difference_shown"]:
        return ""
    if record["runs"] < 2:
        return "unknown (needs ≥ 2 runs for the spread)"
    if record["runs_for_power"] is None:
        return f"unknown (Δ {record['power_effect']:.1f} pp, run spread {_sd(record)})"
    return f"{record['runs_for_power']} for Δ = {record['power_effect']:.1f} pp"


def comparisons_frame(records: list[dict]) -> pd.DataFrame:
    """The records of `run_comparisons` as comparisons.csv's frame: run counts stay integers
    and an unknown one stays empty (not a float nan)."""
    frame = pd.DataFrame.from_records(records)
    frame["runs_for_power"] = frame["runs_for_power"].astype("Int64")
    return frame


def comparisons_markdown(records: list[dict], *, min_effect: float | None = None) -> str:
    """The records of `run_comparisons` as a GitHub table, with the legend under it."""
    shown = [_cells(record) for record in records]
    table = tabulate(shown, headers=HEADERS, tablefmt="github", disable_numparse=True)
    replicated = sum(1 for record in records if record["runs"] >= 2)
    return f"{table}\n\n{legend(replicated, len(records), min_effect)}"


def _cells(record: dict) -> list[str]:
    one_run = record["runs"] < 2
    interval = "" if one_run else f" [{record['ci95_low']:+.1f}, {record['ci95_high']:+.1f}]"
    up, down = record["aso_model_better"], record["aso_baseline_better"]
    aso = "" if record["runs"] < ASO_MIN_RUNS else f"{up:.2f} / {down:.2f}"
    return [
        record["model"], record["baseline"], str(record["runs"]),
        f"{record['accuracy']:.1f}", f"{record['baseline_accuracy']:.1f}",
        f"{record['difference']:+.1f}{interval}", record["run_differences"],
        "" if one_run else f"{record['sign_flip_p']:.3g}",
        "" if one_run else f"{record['holm_p']:.3g}",
        aso, record["verdict"], power_advice(record),
    ]  # fmt: skip


def legend(replicated: int, total: int, min_effect: float | None) -> str:
    """What each column means, which family was corrected, and what one run cannot say."""
    parts = [
        "A run is one training run (a split × seed); the model's runs are paired with the "
        "baseline's of the same split and seed and compared on the test videos both scored. "
        "Δ: mean over runs of (model − baseline) video top-1, in percentage points; its 95% "
        "interval is a hierarchical bootstrap (10,000 resamples of the runs, then of the videos "
        "within each run), so it includes training variance and test-set noise."
    ]
    if replicated:
        parts.append(
            "sign-flip p: two-sided permutation test over the runs' Δ (exact over all 2^n sign "
            f"patterns up to {EXACT_UP_TO} runs, {MONTE_CARLO_FLIPS:,} random patterns beyond; "
            "n runs cannot give p below 2/2^n). Holm p: Holm–Bonferroni over the "
            f"family of the {replicated} comparison{'s' * (replicated != 1)} of this spec with "
            "two runs or more (every attention row against its baseline); a difference is "
            f"claimed only where Holm p < {ALPHA}. ASO ε_min ↑ / ↓: almost stochastic order "
            "(Dror et al. 2019) of the model's run accuracies over the baseline's, and the "
            f"reverse, from {ASO_MIN_RUNS} runs on; descriptive only: with few runs, identical "
            f"models also fall below its usual threshold ({ASO_THRESHOLD}) in one direction by "
            "chance (about 1 pair in 5 at 3 runs), so no verdict rests on it. Runs for "
            f"80% power: run pairs the sign-flip test needs to detect {_effect(min_effect)} at "
            f"α = {ALPHA}/{max(replicated, 1)}, from the spread of the runs' Δ (the exact "
            "test's power for normal Δ, simulated up to 10 runs; the paired t-test's beyond)."
        )
    if replicated < total:
        parts.append(
            f"{total - replicated} row{'s' * (total - replicated != 1)} with one run each: "
            "training variance is unknown, so nothing is claimed. Train more seeds "
            "(`train.seeds: [0, 1, 2, 3, 4, 5]`) to measure it."
        )
    return " ".join(parts)


def _effect(min_effect: float | None) -> str:
    return "the observed Δ" if min_effect is None else f"Δ = {min_effect} pp (--min-effect)"


def _sd(record: dict) -> str:
    sd = record["difference_sd"]
    return "unknown" if math.isnan(sd) else f"{sd:.1f} pp"


def _split_seed(row: ReportRow, run: RunRecord) -> tuple[int | None, int | None]:
    trial = row.trial_of(run)
    return trial.split, trial.seed

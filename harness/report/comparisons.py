"""Each attention row against its baseline, and the spec's planned contrasts between rows, over
training runs (`harness.analysis.replication`).

A row's runs are paired with the other row's by split and seed; each pair is compared on the
test videos both runs scored. Holm's family is every comparison of the spec with two paired runs
or more, baseline comparisons and contrasts (`report.contrasts`) together; a comparison left out
of it is listed with the reason. A row with one run gets no test: its training variance is
unknown, and the report says so instead of quoting the per-video test, which holds each trained
model fixed. The legend states the design's limit: with n runs the sign-flip test cannot give
p below 2/2^n, so a family of m comparisons needs `runs_to_claim(m)` runs before any
difference can be called significant, however large.
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
    runs_to_claim,
    smallest_p_value,
)
from harness.analysis.significance import correctness, on_shared_videos
from harness.report.rows import ReportRow, baseline_of, group_of
from harness.tracking import RunRecord
from harness.tracking.schema import per_video_scores

Outcomes = dict[str, dict[str, int]]  # run id → video → 1 if classified right
Planned = tuple[ReportRow, ReportRow, str]  # the row, the row it is tested against, the kind

HEADERS = ["model", "against", "runs", "acc. (%)", "against (%)", "Δ (pp) [95% CI]",
           "Δ per run (pp)", "sign-flip p", "Holm p", "verdict",
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


def planned_comparisons(rows: list[ReportRow], contrasts: list[list[str]]) -> list[Planned]:
    """Every attention row with runs against its baseline, then every contrast `[a, b]` of the
    spec: each row with module `a` against each row with module `b` in its group (the same
    backbone and settings)."""
    planned = [
        (row, baseline, "baseline")
        for row in rows
        if row.runs
        for baseline in [baseline_of(row, rows)]
        if baseline is not None
    ]  # fmt: skip
    built = [row for row in rows if not row.cited]
    for first, second in contrasts:
        planned += [
            (row, other, "contrast")
            for row in built
            if row.runs and row.fields.get("attention") == first
            for other in built
            if other.fields.get("attention") == second and group_of(other) == group_of(row)
        ]  # fmt: skip
    return planned


def run_comparisons(
    rows: list[ReportRow],
    outcomes: Outcomes,
    *,
    min_effect: float | None = None,
    contrasts: list[list[str]] | None = None,
) -> list[dict]:
    """A record per planned comparison (`planned_comparisons`); `min_effect` (pp) is the Δ the
    power advice is computed for (None: no advice; an observed Δ would make it post hoc)."""
    found = []
    for row, other, kind in planned_comparisons(rows, contrasts or []):
        pairs = paired_runs(row, other, outcomes)
        found.append((row, other, kind, pairs, compare_over_runs(pairs) if pairs else None))
    adjusted = holm([result.p_value if result else math.nan for *_, result in found])
    family = sum(1 for *_, result in found if result is not None and result.replicated)
    return [
        _record(row, other, kind, pairs, result, holm_p, family, min_effect, outcomes)
        for (row, other, kind, pairs, result), holm_p in zip(found, adjusted, strict=True)
    ]


def _record(row, other, kind, pairs, result, holm_p, family, min_effect, outcomes) -> dict:
    """One comparison's record (comparisons.csv's row); `result` None: no run pair to compare."""
    nan = math.nan
    if result is None:
        result = RunComparison(0, (), (), (), nan, nan, nan, nan, nan, 1.0, nan, nan)
    effect = min_effect / 100 if min_effect is not None else None
    needed = (
        runs_for_power(effect, result.difference_sd, ALPHA / max(family, 1))
        if effect is not None and result.replicated
        else None
    )  # fmt: skip
    return {
        "model": row.name,
        "baseline": other.name,
        "kind": kind,
        "runs": result.runs,
        "unpaired_runs": len(row.runs) - len(pairs),
        "accuracy": 100 * float(np.mean(result.model_accuracies or [nan])),
        "baseline_accuracy": 100 * float(np.mean(result.baseline_accuracies or [nan])),
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
        "power_effect": nan if effect is None else 100 * effect,
        "runs_for_power": needed,
        "verdict": verdict(result, holm_p, family, _against(other, kind))
        if pairs
        else _not_compared(row, other, outcomes),
    }


def _against(other: ReportRow, kind: str) -> str:
    return "the baseline" if kind == "baseline" else other.name


def verdict(result: RunComparison, holm_p: float, family: int, against: str) -> str:
    """What the comparison shows, in words a reader cannot over-read. n runs cannot give a
    p-value below 2/2^n: where even that misses α the test cannot show anything, said as such,
    not as "no difference". Holm's steps need p below α/m for the smallest of a family of m,
    up to α for the largest, so a comparison whose smallest p lies between is "not shown", and
    the reason is given."""
    if not result.replicated:
        return "unknown: 1 run each, training variance not measured"
    if holm_p < ALPHA:
        direction = "better" if result.mean_difference > 0 else "worse"
        return f"{direction} than {against} (Holm p < {ALPHA})"
    ties = sum(1 for d in result.differences if d == 0)  # a Δ of 0 flips to itself
    zeros = f" ({ties} with Δ = 0)" if ties else ""
    floor = f"{result.runs} runs{zeros} give p ≥ {result.smallest_p:.3g}"
    if result.smallest_p >= ALPHA:
        return f"no test possible: {floor}"
    if result.smallest_p * family >= ALPHA:
        return (
            f"no difference shown ({floor}; Holm over {family} needs p < {ALPHA / family:.3g} "
            f"to {ALPHA})"
        )
    return "no difference shown"


def _not_compared(row: ReportRow, other: ReportRow, outcomes: Outcomes) -> str:
    """Why a row with runs has no run pair with `other` (it is left out of Holm's family)."""
    if not other.runs:
        return f"not compared: {other.name} has no finished run"
    if not any(run.run_id in outcomes for run in (*row.runs, *other.runs)):
        return "not compared: no run logged its per-video scores"
    return "not compared: no run of both on the same split and seed with per-video scores"


def power_advice(record: dict) -> str:
    """The runs needed for 80 % power at the planned effect, for comparisons that did not
    show a difference (none without a planned effect: see `legend`)."""
    if record["difference_shown"] or record["runs"] == 0 or math.isnan(record["power_effect"]):
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
    replicated = [record for record in records if record["runs"] >= 2]
    design = f"**{_design_sentence(replicated)}**\n\n" if replicated else ""  # read first
    return f"{design}{table}\n\n{legend(records, min_effect)}"


def _cells(record: dict) -> list[str]:
    if record["runs"] == 0:
        return [record["model"], record["baseline"], "0", *[""] * 6, record["verdict"], ""]
    one_run = record["runs"] < 2
    interval = "" if one_run else f" [{record['ci95_low']:+.1f}, {record['ci95_high']:+.1f}]"
    unpaired = record["unpaired_runs"]
    return [
        record["model"], record["baseline"],
        f"{record['runs']}" + (f" (+{unpaired} unpaired)" if unpaired else ""),
        f"{record['accuracy']:.1f}", f"{record['baseline_accuracy']:.1f}",
        f"{record['difference']:+.1f}{interval}", record["run_differences"],
        "" if one_run else f"{record['sign_flip_p']:.3g}",
        "" if one_run else f"{record['holm_p']:.3g}",
        record["verdict"], power_advice(record),
    ]  # fmt: skip


def legend(records: list[dict], min_effect: float | None) -> str:
    """What each column means, which family was corrected, and what one run cannot say."""
    replicated = [record for record in records if record["runs"] >= 2]
    parts = [
        "A run is one training run (a split × seed); the model's runs are paired with those of "
        "the row it is tested against (its baseline, or the other module of a contrast the spec "
        "plans in `report.contrasts`) made on the same split and seed, and compared on the test "
        "videos both scored. Δ: mean over runs of the paired differences in video top-1, in "
        "percentage points; its 95% interval is Student's t over the runs' Δ, per comparison "
        "(not corrected for the family): the verdict, not the interval, decides. Every "
        "statistic holds this test set fixed: it says whether a difference recurs when the "
        "models are trained again, on these test videos."
    ]
    if replicated:
        parts += [_test_sentence(len(replicated)), _power_sentence(len(replicated), min_effect)]
    parts += _left_out_sentences(records)
    if any(record["kind"] == "contrast" for record in records):
        parts.append(
            "A chain such as A > B > baseline is shown only where each of its links is (an "
            "intersection–union test); the order of the rows and of the ranked chart is not "
            "a test."
        )
    parts.append(
        "ASO ε_min (almost stochastic order, Dror et al. 2019) of the model's run accuracies "
        "over the other's, both directions, is in comparisons.csv only: with identical models "
        f"it falls below its usual threshold ({ASO_THRESHOLD}) in one direction by chance in "
        "about 1 run set in 5 at 3 runs and 1 in 10 at 6 to 8 (simulated), so no verdict "
        "rests on it."
    )
    return " ".join(parts)


def _test_sentence(family: int) -> str:
    return (
        "sign-flip p: two-sided permutation test over the runs' Δ (exact over all 2^n sign "
        f"patterns up to {EXACT_UP_TO} runs, {MONTE_CARLO_FLIPS:,} random patterns beyond). "
        f"Holm p: Holm–Bonferroni over the family of the {family} comparison"
        f"{'s' * (family != 1)} of this spec with two runs or more; a difference is claimed "
        f"only where Holm p < {ALPHA}."
    )


def _design_sentence(replicated: list[dict]) -> str:
    """What this many runs can show in a family this size, said before any verdict is read."""
    family, most = len(replicated), max(record["runs"] for record in replicated)
    needed = runs_to_claim(family)
    limits = (
        f"Design: with {most} runs a comparison, the sign-flip test cannot give p below "
        f"2/2^{most} = {smallest_p_value(most):.3g}, and Holm's first step over {family} needs "
        f"p < {ALPHA / family:.3g}"
    )
    if most < needed:
        return (
            f"{limits}, so these runs cannot show a difference of any size: the table "
            f"describes, it does not test. {needed} runs a row (`train.seeds` with {needed} "
            "seeds) are the fewest with which one could be shown."
        )
    return f"{limits}: {needed} runs a row are the fewest with which a difference can be shown."


def _power_sentence(family: int, min_effect: float | None) -> str:
    if min_effect is None:
        return (
            "Runs for 80% power: none given, since no smallest effect of interest is planned "
            "(set `report.min_effect` in the spec, or --min-effect): power computed from the "
            "observed Δ says nothing the p-value does not (Hoenig & Heisey 2001)."
        )
    return (
        f"Runs for 80% power: run pairs the sign-flip test needs to detect Δ = {min_effect} pp "
        f"at α = {ALPHA}/{family}, from the spread of the runs' Δ (an estimate on n − 1 "
        "degrees of freedom, rough with few runs; the exact test's power for normal Δ, "
        "simulated up to 10 runs, the paired t-test's beyond)."
    )


def _left_out_sentences(records: list[dict]) -> list[str]:
    """The comparisons outside Holm's family, and what it would take to bring them in."""
    sentences = []
    one_run = sum(1 for record in records if record["runs"] == 1)
    if one_run:
        needed = runs_to_claim(len(records))
        sentences.append(
            f"{one_run} comparison{'s' * (one_run != 1)} with one run each: training variance "
            f"is unknown, so nothing is claimed. Train more seeds (`train.seeds` with {needed} "
            f"or more, e.g. {list(range(needed))}) to measure it and to be able to show a "
            f"difference over this family of {len(records)}."
        )
    unpaired = sum(1 for record in records if record["runs"] == 0)
    if unpaired:
        sentences.append(
            f"{unpaired} comparison{'s' * (unpaired != 1)} had no run pair (the verdict says "
            "why) and are left out of Holm's family."
        )
    return sentences


def _sd(record: dict) -> str:
    sd = record["difference_sd"]
    return "unknown" if math.isnan(sd) else f"{sd:.1f} pp"


def _split_seed(row: ReportRow, run: RunRecord) -> tuple[int | None, int | None]:
    trial = row.trial_of(run)
    return trial.split, trial.seed

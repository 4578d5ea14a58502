"""Comparisons over training runs: a run (one split × seed) is the unit of replication.

A model trained twice with two seeds scores differently on the same test videos; that training
variance is often as large as the effects attention papers report (Bouthillier et al. 2021,
"Accounting for variance in machine learning benchmarks"). So an attention model is compared
with its baseline run by run, pairing the runs made on the same split with the same seed:

- `d_r = acc_model,r − acc_baseline,r` on the test videos both runs of pair `r` scored, and their
  mean `Δ = mean_r d_r`;
- a **Student's t interval** of Δ over the runs' `d_r` (mean ± t_(n−1)·s/√n): it carries
  training variance with the test videos held fixed, as the test below does. A percentile
  bootstrap over so few runs spans little more than their range: over 3 runs it covered the true
  Δ in 78–91 % of simulated studies, where the t interval keeps its 95 % for normal `d_r`;
- a **sign-flip permutation test** of "no difference" over the runs: under H0 each `d_r` is as
  likely positive as negative; exact over all 2^n sign patterns up to `EXACT_UP_TO` runs
  (`scipy.stats.permutation_test`, `permutation_type="samples"`). Its smallest two-sided p-value is
  2/2^k for k runs with `d_r` ≠ 0: 5 runs can never reach p < 0.05, which `smallest_p` reports
  rather than hides, and `runs_to_claim` turns into the fewest runs a family of comparisons
  needs before Holm's correction can call anything different;
- **almost stochastic order** (ASO; Dror et al. 2019, del Barrio et al. 2018) in both directions:
  ε_min, the upper confidence bound of the violation ratio ε_W2 (Dror et al. eq. 4–5) of "the
  model's runs stochastically dominate the baseline's"; ε_min < 0.2 is the threshold Ulmer et al.
  (2022, deepsig) recommend. Computed here, vectorised, as `deepsig.aso` does (checked against
  it in the tests), with this module's own generator instead of NumPy's global one;
- **Holm–Bonferroni** adjusted p-values across a family of comparisons (Holm 1979);
- **power advice**: the runs a paired test needs to detect a given effect with 80 % power, from
  the noncentral t distribution of the paired t statistic (the large-sample form of the
  sign-flip test), and never fewer than the sign-flip test needs to reach the threshold at all.

Every statistic holds the test set fixed: it asks whether the difference would recur when the
models are trained again, on these test videos, not on other videos of the same classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
EXACT_UP_TO = 16  # runs: every one of the 2^n sign patterns is enumerated
MONTE_CARLO_FLIPS = 9_999  # sign patterns drawn for more runs than that (scipy's default)
ASO_ITERATIONS = 1000  # deepsig's default
ASO_DT = 0.005  # deepsig's default integration step
ASO_THRESHOLD = 0.2  # ε_min below this: "almost stochastically dominates" (Ulmer et al. 2022)
POWER = 0.8
SIMULATED_POWER_UP_TO = 10  # runs: the sign-flip test's power is simulated, not the t-test's
POWER_DRAWS = 2_000  # simulated samples per round of the power simulation
POWER_DRAWS_MAX = 50_000  # rounds stop here (standard error ≤ 0.0018) or once clear of `POWER`
POWER_CLEAR = 4  # standard errors between the simulated power and `POWER` that end the rounds


@dataclass(frozen=True)
class PairedRun:
    """One run of each model on the same split and seed: 0/1 correctness on the shared videos."""

    split: int | None
    seed: int | None
    model: np.ndarray
    baseline: np.ndarray

    @property
    def difference(self) -> float:
        return float(
            np.mean(self.model, dtype=np.float64) - np.mean(self.baseline, dtype=np.float64)
        )


@dataclass(frozen=True)
class RunComparison:
    """An attention model against its baseline over paired training runs (accuracies as
    fractions). With one run, everything that needs training variance is nan."""

    runs: int
    differences: tuple[float, ...]  # d_r, one per run pair
    model_accuracies: tuple[float, ...]
    baseline_accuracies: tuple[float, ...]
    mean_difference: float
    difference_sd: float  # sample sd of d_r (ddof 1)
    ci_low: float  # Student's t over the runs' differences
    ci_high: float
    p_value: float  # sign-flip permutation test, two-sided, uncorrected
    smallest_p: float  # the smallest p-value the test can give with this many runs
    aso_model_better: float  # ε_min of "model dominates baseline"
    aso_baseline_better: float

    @property
    def replicated(self) -> bool:
        """True when training variance was measured (two runs or more)."""
        return self.runs >= 2


def compare_over_runs(pairs: Sequence[PairedRun], *, seed: int = 0) -> RunComparison:
    """Every statistic of the module for one attention model against its baseline."""
    if not pairs:
        raise ValueError("need at least one pair of runs")
    differences = np.array([pair.difference for pair in pairs])
    model = np.array([np.mean(pair.model, dtype=np.float64) for pair in pairs])
    baseline = np.array([np.mean(pair.baseline, dtype=np.float64) for pair in pairs])
    nan = float("nan")
    if len(pairs) < 2:
        low = high = p = sd = aso_up = aso_down = nan
        smallest = 1.0
    else:
        low, high = t_interval(differences)
        p, smallest = sign_flip_test(differences, seed=seed)
        sd = float(differences.std(ddof=1))
        aso_up = aso(model, baseline, seed=seed)
        aso_down = aso(baseline, model, seed=seed)
    return RunComparison(
        len(pairs), tuple(differences.tolist()), tuple(model.tolist()), tuple(baseline.tolist()),
        float(differences.mean()), sd, low, high, p, smallest, aso_up, aso_down,
    )  # fmt: skip


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of the mean of `values`, one per run: mean ± t_(n−1)·s/√n (s: the
    sample sd). Needs two values or more."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        raise ValueError("a t interval needs at least two runs")
    mean = float(values.mean())
    quantile = stats.t.ppf(1 - (1 - confidence) / 2, len(values) - 1)
    half = float(quantile * values.std(ddof=1) / math.sqrt(len(values)))
    return mean - half, mean + half


def sign_flip_test(differences: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """Two-sided p-value of the sign-flip permutation test on the mean of `differences`, and
    the smallest p-value this many runs can give: exact (all 2^n patterns) up to `EXACT_UP_TO`
    runs, from `MONTE_CARLO_FLIPS` random patterns beyond."""
    values = np.asarray(differences, dtype=np.float64)
    smallest = smallest_p_value(int(np.count_nonzero(values)))  # a Δ of 0 flips to itself
    if np.all(values == 0):
        return 1.0, smallest
    # scipy enumerates every pattern only when n_resamples ≥ 2^n: inf for the exact range
    resamples = np.inf if len(values) <= EXACT_UP_TO else MONTE_CARLO_FLIPS
    result = stats.permutation_test(
        (values,), _mean_statistic, permutation_type="samples", vectorized=True,
        n_resamples=resamples, alternative="two-sided", rng=seed,
    )  # fmt: skip
    return float(result.pvalue), smallest


def _mean_statistic(values: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(values, axis=axis)


def smallest_p_value(runs: int) -> float:
    """The smallest two-sided p-value of the sign-flip test over `runs` runs: 2/2^n (exact)."""
    if runs < 2:
        return 1.0
    if runs > EXACT_UP_TO:
        return 2 / (MONTE_CARLO_FLIPS + 1)
    return 2 / 2**runs


def runs_to_claim(family: int, alpha: float = ALPHA) -> int:
    """The fewest runs with which the sign-flip test can give a p-value that Holm's first step
    over a family of `family` comparisons accepts (2/2^n < alpha/family): below it, no
    difference of any size can be called significant (6 runs for one comparison, 8 for four)."""
    runs = 2
    while smallest_p_value(runs) * max(family, 1) >= alpha:
        runs += 1
    return runs


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979), in the order given: the k-th smallest of m
    is multiplied by m − k + 1, made monotone, capped at 1. nan entries are left out of the
    family and stay nan."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[index] = running
    return adjusted


def violation_ratio(
    scores_a: np.ndarray, scores_b: np.ndarray, *, dt: float = ASO_DT
) -> float | np.ndarray:
    """ε_W2 of "A stochastically dominates B" (Dror et al. 2019, eq. 4–5): the share of the
    squared 2-Wasserstein distance between the two empirical quantile functions lying where A's
    quantile is below B's. 0: A dominates everywhere; 1: B does; 0.5 when they are identical.
    Score arrays of shape (k, n) give k ratios at once (the bootstrap's)."""
    t = np.arange(dt, 1, dt)
    f, g = _quantiles(scores_a, t), _quantiles(scores_b, t)  # (len(t),) or (k, len(t))
    gap = g - f
    total = np.sum(gap**2 * dt, axis=-1)
    violated = np.where(f < g, gap, 0.0)[..., 1:]  # as deepsig: the first point is left out
    within = np.sum(violated**2 * dt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(total == 0, 0.5, within / total)
    return float(ratios) if ratios.ndim == 0 else ratios


def _quantiles(scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The empirical quantile function of `scores` (last axis) at `t`: sorted[⌈n·t⌉ − 1]."""
    ordered = np.sort(scores, axis=-1)
    n = ordered.shape[-1]
    index = np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)
    return ordered[..., index]


def aso(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    comparisons: int = 1,
    iterations: int = ASO_ITERATIONS,
    dt: float = ASO_DT,
    seed: int = 0,
) -> float:
    """ε_min of "A almost stochastically dominates B" (Dror et al. 2019; deepsig's `aso`): the
    violation ratio minus its bootstrap standard error times z_(confidence), clipped to [0, 1];
    `comparisons` > 1 raises the confidence Bonferroni-style, as deepsig does."""
    a, b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    if comparisons > 1:
        confidence += (1 - confidence) / comparisons
    observed = float(violation_ratio(a, b, dt=dt))
    rng = np.random.default_rng(seed)
    resampled_a = _quantiles(a, rng.uniform(0, 1, (iterations, len(a))))  # (iterations, n_a)
    resampled_b = _quantiles(b, rng.uniform(0, 1, (iterations, len(b))))
    ratios = violation_ratio(resampled_a, resampled_b, dt=dt)
    scale = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    sigma = float(np.std(scale * (ratios - observed)))
    bound = observed - sigma / scale * stats.norm.ppf(1 - confidence)
    return float(np.clip(bound, 0.0, 1.0))


def t_test_power(effect: float, sd: float, runs: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test over `runs` run pairs for a true mean difference
    `effect` with per-pair sd `sd` (noncentral t; Cohen 1988, ch. 2)."""
    if runs < 2 or not sd > 0:
        return float("nan")
    df = runs - 1
    shift = effect / sd * math.sqrt(runs)
    critical = stats.t.ppf(1 - alpha / 2, df)
    # the lower tail as the upper tail of the mirrored distribution: scipy's nct.cdf far in its
    # left tail returns nan for large shifts, nct.sf does not
    return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift))


def sign_flip_power(effect: float, sd: float, runs: int, alpha: float = ALPHA) -> float:
    """Power of the exact sign-flip test for run differences ~ N(`effect`, `sd`²): 0 where
    `runs` cannot reach `alpha` at all (2/2^n > alpha); up to `SIMULATED_POWER_UP_TO` runs,
    where the test's few attainable p-values make it clearly weaker than a t-test, simulated
    (fixed seed, every sign pattern enumerated, draws added until clearly on one side of
    `POWER`); beyond, the paired t-test's power, which the sign-flip test's approaches
    (Lehmann & Romano 2005, §15.2)."""
    if smallest_p_value(runs) > alpha:
        return 0.0
    if not sd > 0:
        return float("nan")
    if runs <= SIMULATED_POWER_UP_TO:
        return _simulated_sign_flip_power(effect / sd, runs, alpha)
    return t_test_power(effect, sd, runs, alpha)


def _simulated_sign_flip_power(shift: float, runs: int, alpha: float) -> float:
    """The rejection rate of the exact two-sided test over samples of `runs` differences
    ~ N(shift, 1): p = share of sign patterns with |mean| ≥ the observed |mean|. Samples come
    in rounds of `POWER_DRAWS` (fixed seed) until the rate is `POWER_CLEAR` standard errors
    from `POWER`, or `POWER_DRAWS_MAX` are drawn: `runs_for_power` compares it with `POWER`,
    and a rate that close to it needs many draws to fall on the right side."""
    rng = np.random.default_rng(0)
    # half the patterns: −s gives the same |sum| as s, so the first sign can stay +1
    patterns = 1 - 2 * ((np.arange(2 ** (runs - 1))[:, None] >> np.arange(runs)) & 1)
    rejected = drawn = 0
    while True:
        differences = rng.normal(shift, 1.0, (POWER_DRAWS, runs))
        flipped = np.abs(differences @ patterns.T)  # (draws, 2^(n−1)): |sum| per pattern
        observed = np.abs(differences.sum(axis=1, keepdims=True))
        p_values = np.mean(flipped >= observed * (1 - 1e-12), axis=1)
        rejected, drawn = rejected + int(np.sum(p_values <= alpha)), drawn + POWER_DRAWS
        power = rejected / drawn
        error = math.sqrt(max(power * (1 - power), 1e-12) / drawn)
        if abs(power - POWER) > POWER_CLEAR * error or drawn >= POWER_DRAWS_MAX:
            return power


def runs_for_power(
    effect: float, sd: float, alpha: float = ALPHA, power: float = POWER, limit: int = 10_000
) -> int | None:
    """The fewest run pairs with which the sign-flip test detects `effect` (given the per-pair
    sd `sd`) with probability `power`; None when unknown (no sd, no effect) or over `limit`."""
    if not (sd > 0 and abs(effect) > 0 and math.isfinite(sd)):
        return None
    runs = 2
    while smallest_p_value(runs) > alpha:
        runs += 1
    while runs <= SIMULATED_POWER_UP_TO:  # the simulated range, run by run
        if sign_flip_power(abs(effect), sd, runs, alpha) >= power:
            return runs
        runs += 1
    enough = runs  # beyond it the t power rises with n: double, then bisect
    while t_test_power(abs(effect), sd, enough, alpha) < power:
        if enough > limit:
            return None
        runs, enough = enough + 1, enough * 2
    while runs < enough:
        middle = (runs + enough) // 2
        if t_test_power(abs(effect), sd, middle, alpha) >= power:
            enough = middle
        else:
            runs = middle + 1
    return enough if enough <= limit else None

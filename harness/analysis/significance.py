"""How sure a comparison is: an attention model against its baseline on the same test videos.

Both models were evaluated on the same split, so the comparison is paired per video:

- the difference in video accuracy, `Δ = mean(a) − mean(b)` with `a`, `b` the 0/1 correctness of
  the attention model and the baseline, and a percentile bootstrap confidence interval that
  resamples videos (Efron & Tibshirani 1993, ch. 13);
- McNemar's exact test on the discordant videos: `n10` right only with attention, `n01` right only
  with the baseline; under "no difference" `n10 ~ Binomial(n10 + n01, ½)`, and the two-sided
  p-value is `min(1, 2·P(X ≤ min(n10, n01)))` (McNemar 1947; exact form, Edwards 1948).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedComparison:
    """An attention model against its baseline on the same videos."""

    videos: int
    accuracy: float  # of the attention model
    baseline_accuracy: float
    difference: float  # accuracy − baseline_accuracy
    ci_low: float
    ci_high: float
    only_model: int  # n10: videos only the attention model gets right
    only_baseline: int  # n01
    p_value: float  # McNemar, exact two-sided


def mcnemar_exact(only_model: int, only_baseline: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    n = only_model + only_baseline
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_model, only_baseline) + 1))
    return min(1.0, float(2 * Fraction(tail, 2**n)))  # exact even when 2**n overflows a float


def bootstrap_interval(
    differences: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of per-video `differences` (values in {−1, 0, 1})."""
    means = resampled_means(differences, samples, np.random.default_rng(seed))
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def resampled_means(values: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """`samples` bootstrap means of `values` (few distinct values: 0/1 outcomes, −1/0/1
    differences), each of `len(values)` draws with replacement.

    Drawing n videos with replacement only matters through how many of each distinct value are
    drawn, which is multinomial: sampling those counts is the same bootstrap at O(samples) cost
    instead of O(samples · n), so a thousand comparisons over a UCF101 test set stay fast. The
    multinomial is drawn as conditional binomials, one vectorised draw per distinct value but
    the last.
    """
    distinct, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    n = int(counts.sum())
    remaining_draws = np.full(samples, n)
    remaining_weight = n
    sums = np.zeros(samples)
    order = np.argsort(distinct == 0, kind="stable")  # zeros last: they add nothing to the sum
    for value, count in zip(distinct[order][:-1], counts[order][:-1], strict=True):
        drawn = rng.binomial(remaining_draws, count / remaining_weight)  # (samples,)
        sums += value * drawn
        remaining_draws -= drawn
        remaining_weight -= count
    sums += distinct[order][-1] * remaining_draws  # the last value takes the draws left over
    return sums / n


def compare(model_correct: np.ndarray, baseline_correct: np.ndarray) -> PairedComparison:
    """Paired comparison of two 0/1 correctness vectors over the same videos."""
    a = np.asarray(model_correct, dtype=np.int64)
    b = np.asarray(baseline_correct, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length non-empty vectors, got {a.shape} and {b.shape}")
    differences = (a - b).astype(np.float64)
    low, high = bootstrap_interval(differences)
    only_model = int(np.sum((a == 1) & (b == 0)))
    only_baseline = int(np.sum((a == 0) & (b == 1)))
    return PairedComparison(
        videos=len(a),
        accuracy=float(a.mean()),
        baseline_accuracy=float(b.mean()),
        difference=float(differences.mean()),
        ci_low=low,
        ci_high=high,
        only_model=only_model,
        only_baseline=only_baseline,
        p_value=mcnemar_exact(only_model, only_baseline),
    )


def correctness(per_video: dict) -> dict[str, int]:
    """Video name → 1 if its top-scoring class is its label, from `per_video_scores.json`; a
    video whose scores are not all finite (a store written before such runs failed) is 0, not
    the argmax of NaN (class 0)."""
    return {name: _right(entry) for name, entry in per_video["videos"].items()}


def _right(entry: dict) -> int:
    scores = np.asarray(entry["scores"], dtype=np.float64)
    return int(bool(np.isfinite(scores).all()) and int(np.argmax(scores)) == entry["label"])


def on_shared_videos(
    model: dict[str, int], baseline: dict[str, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Two runs' correctness (`correctness`) on the videos both scored, paired by name in name
    order; None when they share none."""
    shared = sorted(model.keys() & baseline.keys())
    if not shared:
        return None
    return np.array([model[v] for v in shared]), np.array([baseline[v] for v in shared])

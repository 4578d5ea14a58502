"""The report's significance numbers against hand-computed values."""

import json
import math

import numpy as np
import pytest

from harness.analysis.significance import (
    bootstrap_interval,
    compare,
    correctness,
    mcnemar_exact,
    on_shared_videos,
)


def test_mcnemar_exact_matches_hand_computed_binomial_tails():
    # n10 = 3, n01 = 1: n = 4, P(X ≤ 1) = (C(4,0) + C(4,1)) / 16 = 5/16, p = 2·5/16 = 0.625.
    assert mcnemar_exact(3, 1) == pytest.approx(0.625)
    # n10 = 10, n01 = 0: P(X ≤ 0) = 1/1024, p = 2/1024.
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)  # symmetric
    # n10 = 6, n01 = 2: P(X ≤ 2) = (1 + 8 + 28) / 256 = 37/256, p = 74/256.
    assert mcnemar_exact(6, 2) == pytest.approx(74 / 256)
    assert mcnemar_exact(5, 5) == 1.0  # capped: the two tails overlap at the centre
    assert mcnemar_exact(0, 0) == 1.0  # no discordant video: no evidence either way


def test_mcnemar_stays_exact_for_test_sets_larger_than_a_float_exponent():
    # 2**1200 overflows a float; the tail must still be computed exactly (not 0 or nan).
    p = mcnemar_exact(650, 550)
    assert 0 < p < 0.01 and math.isfinite(p)
    # Normal approximation with continuity correction: z = (|650-550| - 1) / sqrt(1200).
    z = 99 / math.sqrt(1200)
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.1)


def test_compare_counts_discordant_videos_and_the_accuracy_difference():
    baseline = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0, 0])  # 4/10
    model = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 0])  # 6/10
    result = compare(model, baseline)
    assert result.videos == 10
    assert result.accuracy == pytest.approx(0.6)
    assert result.baseline_accuracy == pytest.approx(0.4)
    assert result.difference == pytest.approx(0.2)
    assert (result.only_model, result.only_baseline) == (3, 1)
    assert result.p_value == pytest.approx(0.625)
    assert result.ci_low <= 0.2 <= result.ci_high
    # Per-video differences are {+1: 3, −1: 1, 0: 6}; a resampled mean lies in [−0.1·10, 0.3·10]/10
    # and cannot reach ±1 with 10 videos unless every draw is the same video.
    assert -0.3 <= result.ci_low < 0.2 < result.ci_high <= 0.6


def test_bootstrap_of_a_constant_difference_is_that_constant():
    assert bootstrap_interval(np.ones(25)) == (1.0, 1.0)
    assert bootstrap_interval(np.zeros(25)) == (0.0, 0.0)


def test_bootstrap_interval_agrees_with_the_normal_approximation_on_a_large_sample():
    rng = np.random.default_rng(3)
    differences = rng.choice([-1.0, 0.0, 1.0], p=[0.15, 0.6, 0.25], size=2000)
    low, high = bootstrap_interval(differences)
    half = 1.96 * differences.std(ddof=1) / math.sqrt(len(differences))
    assert low == pytest.approx(differences.mean() - half, abs=0.004)
    assert high == pytest.approx(differences.mean() + half, abs=0.004)


def test_bootstrap_is_reproducible():
    differences = np.array([1.0, 0.0, -1.0, 1.0, 1.0, 0.0])
    assert bootstrap_interval(differences) == bootstrap_interval(differences)


def test_runs_are_paired_by_video_name_on_the_videos_both_scored():
    model = {"videos": {
        "a.avi": {"label": 0, "scores": [0.9, 0.1]},  # right
        "b.avi": {"label": 1, "scores": [0.2, 0.8]},  # right
        "c.avi": {"label": 1, "scores": [0.7, 0.3]},  # wrong
        "only_model.avi": {"label": 0, "scores": [1.0, 0.0]},
    }}  # fmt: skip
    baseline = {"videos": {
        "c.avi": {"label": 1, "scores": [0.4, 0.6]},  # right
        "b.avi": {"label": 1, "scores": [0.6, 0.4]},  # wrong
        "a.avi": {"label": 0, "scores": [0.3, 0.7]},  # wrong
    }}  # fmt: skip
    assert correctness(model) == {"a.avi": 1, "b.avi": 1, "c.avi": 0, "only_model.avi": 1}
    paired = on_shared_videos(correctness(model), correctness(baseline))
    assert [v.tolist() for v in paired] == [[1, 1, 0], [0, 0, 1]]  # a, b, c in name order
    result = compare(*paired)
    assert result.videos == 3
    assert (result.only_model, result.only_baseline) == (2, 1)
    assert result.difference == pytest.approx(1 / 3)
    assert on_shared_videos(correctness(model), {}) is None


def test_compare_rejects_vectors_of_different_length():
    with pytest.raises(ValueError, match="equal-length"):
        compare(np.array([1, 0]), np.array([1]))


def test_a_video_scored_nan_counts_as_wrong_not_as_class_0():
    nan = float("nan")
    videos = {"a.avi": {"label": 0, "scores": [nan, nan]},  # argmax of NaN is 0: not "right"
              "b.avi": {"label": 1, "scores": [0.2, float("inf")]},
              "c.avi": {"label": 0, "scores": [0.9, 0.1]}}  # fmt: skip
    parsed = json.loads(json.dumps({"videos": videos}))  # NaN survives the artifact round trip
    assert correctness(parsed) == {"a.avi": 0, "b.avi": 0, "c.avi": 1}

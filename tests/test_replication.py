"""Comparisons over training runs (`harness.analysis.replication`): the issue's acceptance claims.

1. A/A: two identical models compared run by run are called different no more often than the
   nominal 5 % under the report's decision rule (Holm-adjusted sign-flip p < 0.05): at 5 runs (0 %
   by construction), at 10 runs, and family-wise for 3 identical models against one baseline with
   Holm over the 3; while the old per-video McNemar test on one seed pair calls the same identical
   models different far more often once training runs vary.
2. A known effect (Δ = the run-level sd) is detected at the rate `sign_flip_power` predicts, at 5
   runs (power 0) and 10 runs, within 10 percentage points.
3. Each statistic equals a reference implementation on fixed inputs: the sign-flip test equals
   `scipy.stats.permutation_test` and a hand enumeration of all 2^n sign patterns; the t
   interval equals scipy's and keeps its level at 3 runs, where a percentile bootstrap over the
   runs falls well short; the violation ratio and ASO ε_min equal `deepsig`'s (run in a
   subprocess: importing deepsig changes joblib's pickler and deepsig reseeds NumPy's global
   RNG); Holm matches the worked example of Holm's procedure; the power helpers match G*Power
   and a Monte-Carlo paired t-test; `runs_to_claim` is where Holm can first accept the floor.
4. With one run nothing that needs training variance is reported.

The simulations call `sign_flip_test` directly: it is the only part of `compare_over_runs` the
decision uses (ASO costs far more), and a test below checks that
`compare_over_runs(...).p_value` is exactly `sign_flip_test` of the per-run differences.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

from harness.analysis.replication import (
    PairedRun,
    aso,
    compare_over_runs,
    holm,
    runs_for_power,
    runs_to_claim,
    sign_flip_power,
    sign_flip_test,
    smallest_p_value,
    t_interval,
    t_test_power,
    violation_ratio,
)
from harness.analysis.significance import compare

ALPHA = 0.05  # the report's threshold (harness.analysis.replication.ALPHA)
REPETITIONS = 200
VIDEOS = 300
BASE_ACCURACY = 0.6
SIGMA_RUN = 0.04  # sd of a run's accuracy around its model's mean accuracy (training noise)
# Per-video probability of being right for a run of accuracy 0.6: half the videos are hard (0.4),
# half easy (0.8), the same for both models of a run pair, so the pairing by video matters.
DIFFICULTY = np.tile([0.4, 0.8], VIDEOS // 2)
DIFFICULTY_VARIANCE = float(DIFFICULTY.var())  # 0.04
# Binomial sd of a rate near 5 % over 200 repetitions: sqrt(0.05 · 0.95 / 200) ≈ 0.0154; an
# upper margin of 2 sd (one-sided, ≈ 2.3 % chance of exceeding it when the true rate is 5 %).
FALSE_POSITIVE_BOUND = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / REPETITIONS)  # ≈ 0.081


# --- 1. A/A and 2. a known effect, simulated ------------------------------------------------


def simulate(rng: np.random.Generator, runs: int, effects: list[float]) -> np.ndarray:
    """Per-video correctness, shape (repetitions, runs, models, videos), of models whose mean
    accuracy is 0.6 + effects[m]: each run draws its accuracy shift δ ~ N(0, SIGMA_RUN²), then
    each video's 0/1 correctness ~ Bernoulli(clip(difficulty_v + effect + δ, 0, 1)). The clip
    is never reached in practice (it needs δ > 4 sd)."""
    shape = (REPETITIONS, runs, len(effects))
    shift = np.asarray(effects) + rng.normal(0.0, SIGMA_RUN, shape)
    chance = np.clip(DIFFICULTY + shift[..., None], 0.0, 1.0)
    return rng.random(chance.shape) < chance


def run_differences(correct: np.ndarray, model: int, baseline: int = 0) -> np.ndarray:
    """d_r = acc_model,r − acc_baseline,r for every repetition: shape (repetitions, runs)."""
    accuracy = correct.mean(axis=-1)
    return accuracy[:, :, model] - accuracy[:, :, baseline]


def holm_rejects(differences: np.ndarray) -> bool:
    """The report's decision for a family of comparisons, one row of `differences` each: some
    Holm-adjusted sign-flip p-value is below 0.05."""
    p_values = [sign_flip_test(row)[0] for row in differences]
    return min(holm(p_values)) < ALPHA


def rejection_rate(differences: np.ndarray) -> float:
    """Share of repetitions (axis 0) in which a family (axis 1) rejects; `differences` is
    (repetitions, family, runs)."""
    return float(np.mean([holm_rejects(family) for family in differences]))


@functools.cache
def identical_models() -> np.ndarray:
    """Baseline and three identical "attention" models at 10 runs (shared by the A/A tests)."""
    return simulate(np.random.default_rng(2024), 10, [0.0, 0.0, 0.0, 0.0])


@functools.cache
def aa_rates() -> tuple[float, float]:
    """A/A false-positive rates of one comparison at 5 runs (the first 5 of each repetition)
    and at 10 runs."""
    d = run_differences(identical_models(), model=1)  # (200, 10)
    return rejection_rate(d[:, None, :5]), rejection_rate(d[:, None, :])


def test_aa_single_comparison_never_rejects_at_five_runs_and_holds_the_level_at_ten():
    five, ten = aa_rates()
    print(f"\nA/A false-positive rate, Holm sign-flip: 5 runs {five:.3f}, 10 runs {ten:.3f}")
    assert smallest_p_value(5) > ALPHA  # why 5 runs gives 0 %: p ≥ 2/2^5 = 0.0625
    assert five == 0.0, f"5 runs: {five}"
    assert ten <= FALSE_POSITIVE_BOUND, f"10 runs: {ten} > {FALSE_POSITIVE_BOUND:.3f}"


def test_aa_family_of_three_identical_models_holds_the_family_wise_level():
    d = np.stack([run_differences(identical_models(), model=m) for m in (1, 2, 3)], axis=1)
    rate = rejection_rate(d)  # d: (200, 3, 10); Holm over the 3 in each repetition
    print(f"\nA/A family-wise rate, 3 models vs one baseline, Holm, 10 runs: {rate:.3f}")
    assert rate <= FALSE_POSITIVE_BOUND, f"family-wise {rate} > {FALSE_POSITIVE_BOUND:.3f}"


def test_aa_per_video_mcnemar_on_one_seed_pair_calls_identical_models_different():
    # The old test holds each trained model fixed: a run-to-run accuracy shift (sd √2·0.04 for
    # the difference) is as large as its per-video standard error (≈ √(0.4/300) ≈ 0.037), so
    # it rejects far more often than 5 % (≈ 29 % expected in this simulation model).
    correct = identical_models()
    rate = float(np.mean([compare(rep[0, 1], rep[0, 0]).p_value < ALPHA for rep in correct]))
    replicated = aa_rates()[1]
    print(f"\nA/A McNemar on run pair 1: {rate:.3f}; sign-flip over 10 runs: {replicated:.3f}")
    assert rate > 0.15, f"McNemar false-positive rate {rate} should far exceed 5 %"


def difference_sd(effect: float) -> float:
    """Analytic sd of one run's d_r in `simulate`, baseline at 0.6, model at 0.6 + effect.

    Given the run shifts δ_m, δ_b, d_r = mean_v X_m,v − mean_v X_b,v with E[d_r | δ] =
    effect + δ_m − δ_b (the shared difficulties cancel), so Var(E[d_r | δ]) = 2σ_run².
    Given δ, the 2V outcomes are independent Bernoulli(π) with π_v = q_v + effect + δ, so
    Var(d_r | δ) = (1/V²) Σ_v [π_m,v(1 − π_m,v) + π_b,v(1 − π_b,v)]. Averaging over v and δ,
    with E π = μ and Var π = Var(q) + σ_run² (q and δ independent):
    E[π(1 − π)] = μ(1 − μ) − Var(q) − σ_run². By the law of total variance:
    sd_d² = 2σ_run² + [μ_m(1 − μ_m) + μ_b(1 − μ_b) − 2 Var(q) − 2σ_run²] / V.
    """
    base, model = BASE_ACCURACY, BASE_ACCURACY + effect
    spread = 2 * DIFFICULTY_VARIANCE + 2 * SIGMA_RUN**2
    video = (model * (1 - model) + base * (1 - base) - spread) / VIDEOS
    return math.sqrt(2 * SIGMA_RUN**2 + video)


def test_simulated_difference_sd_matches_its_derivation():
    # Guards the analytic sd the power check below depends on.
    d = run_differences(simulate(np.random.default_rng(7), 10, [0.0, SIGMA_RUN]), model=1)
    simulated, analytic = float(d.std(ddof=1)), difference_sd(SIGMA_RUN)
    print(f"\nsd of d_r: simulated {simulated:.4f}, analytic {analytic:.4f}")
    assert simulated == pytest.approx(analytic, rel=0.05)
    assert float(d.mean()) == pytest.approx(SIGMA_RUN, abs=0.005)


@pytest.mark.parametrize("runs", [5, 10])
def test_known_effect_is_detected_at_the_rate_sign_flip_power_predicts(runs: int):
    effect = SIGMA_RUN  # Δ = the run-level sd
    d = run_differences(simulate(np.random.default_rng(100 + runs), runs, [0.0, effect]), 1)
    detected = [holm_rejects(row[None, :]) and row.mean() > 0 for row in d]
    simulated = float(np.mean(detected))
    # the analytic power: 0 where the exact test cannot reach α (5 runs: 2/2^5 > 0.05), else the
    # paired t-test's (noncentral t), which the sign-flip test approaches; `sign_flip_power`
    # (what the report's advice uses) simulates the exact test where the two differ
    reachable = smallest_p_value(runs) <= ALPHA
    analytic = t_test_power(effect, difference_sd(effect), runs) if reachable else 0.0
    advised = sign_flip_power(effect, difference_sd(effect), runs)
    print(f"\nknown effect, {runs} runs: detected {simulated:.3f}, analytic (noncentral t) "
          f"{analytic:.3f}, exact sign-flip power {advised:.3f}")  # fmt: skip
    assert abs(simulated - analytic) <= 0.10, f"{runs} runs: {simulated} vs {analytic}"
    assert abs(simulated - advised) <= 0.10, f"{runs} runs: {simulated} vs {advised}"
    if runs == 5:
        assert analytic == advised == simulated == 0.0


def test_compare_over_runs_p_value_is_the_sign_flip_test_the_simulations_call():
    correct = simulate(np.random.default_rng(11), 6, [0.0, SIGMA_RUN])[0]  # (6 runs, 2, V)
    pairs = [
        PairedRun(0, s, run[1].astype(int), run[0].astype(int)) for s, run in enumerate(correct)
    ]
    result = compare_over_runs(pairs)
    differences = run_differences(correct[None], model=1)[0]
    assert result.differences == pytest.approx(differences.tolist(), abs=1e-15)
    assert result.p_value == sign_flip_test(differences)[0]
    assert result.smallest_p == 2 / 2**6
    assert result.ci_low < result.mean_difference < result.ci_high
    assert result.difference_sd == pytest.approx(float(np.std(differences, ddof=1)))


# --- 3. Reference implementations on fixed inputs --------------------------------------------

FIXED_DIFFERENCES = np.array([0.012, -0.004, 0.021, 0.008, -0.011, 0.015, 0.003, 0.009])


def test_sign_flip_p_value_equals_scipy_permutation_test():
    p, smallest = sign_flip_test(FIXED_DIFFERENCES)
    for resamples in (np.inf, 2**16):  # both enumerate all 2^8 sign patterns
        reference = stats.permutation_test(
            (FIXED_DIFFERENCES,), np.mean, permutation_type="samples",
            n_resamples=resamples, alternative="two-sided",
        )  # fmt: skip
        assert p == reference.pvalue, resamples
    assert smallest == 2 / 2**8
    assert 2 / 2**8 < p < 1  # a p-value the data decide, not an edge case
    assert p * 2**8 == pytest.approx(round(p * 2**8))  # a count over the 256 patterns


def enumerated_p_values(d: np.ndarray) -> tuple[float, float]:
    """The sign-flip p-value by hand over all 2^n sign vectors: P(|mean*| ≥ |mean|), and scipy's
    two-sided definition 2·min(P(mean* ≤ mean), P(mean* ≥ mean)) capped at 1; a tiny tolerance
    counts means equal in exact arithmetic but not in floating point (0.1 + 0.2 vs 0.3)."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    means, observed, tiny = signs @ d / len(d), float(d.mean()), 1e-12
    absolute = float(np.mean(np.abs(means) >= abs(observed) - tiny))
    lower, upper = np.mean(means <= observed + tiny), np.mean(means >= observed - tiny)
    return absolute, float(min(1.0, 2 * min(lower, upper)))


@pytest.mark.parametrize(
    "d",
    [
        [0.012, -0.004, 0.021, 0.008, -0.011, 0.015],  # generic
        [0.1, 0.2, 0.3, -0.1, 0.05, 0.15],  # flipped means that tie with the observed one
        [0.1, -0.1, 0.2, -0.2, 0.05, -0.05],  # mean 0: p = 1
        [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],  # all one sign: the smallest p, 2/2^6
        # 14 runs: exact too (2^14 patterns, more than scipy's default 9,999 random draws),
        # p = 0.0522, where the random draws of old gave 0.049, "better" at α = 0.05
        [0.62, 1.22, 2.3, 0.29, 0.11, -0.76, 1.34, 0.74, -0.25, 1.04, 0.91, -1.52, 1.09, 0.49],
    ],
)
def test_sign_flip_p_value_equals_a_hand_enumeration_of_all_sign_vectors(d: list[float]):
    # The two definitions agree for the sign-flip null: it is symmetric, since the pattern −s
    # gives exactly −mean(s·d) (negation is exact in floating point). For t = mean > 0,
    # P(T ≥ t) = P(T ≤ −t) = ½·P(|T| ≥ t) and P(T ≤ t) ≥ ½, so 2·min(...) = P(|T| ≥ |t|); at
    # t = 0 both are 1 (scipy's 2·min is ≥ 1 there and is capped).
    values = np.array(d)
    absolute, two_sided = enumerated_p_values(values)
    assert absolute == two_sided
    assert sign_flip_test(values)[0] == pytest.approx(absolute, abs=1e-12)


def test_sign_flip_counts_flipped_means_that_tie_only_in_exact_arithmetic():
    # Flipping the pair {0.1, −0.1} keeps the sum 0.7, so 4 sign vectors (the identity, that flip
    # and their negations) give |mean*| = |mean| in exact arithmetic; 4 more give a larger one.
    # Computed as a matrix product, the 4 ties come out a hair below np.mean's value: a strict
    # count loses them. scipy's relative tolerance (100 ulp) counts them, as does the hand
    # enumeration with its tiny tolerance.
    d = np.array([0.1, 0.2, 0.3, -0.1, 0.05, 0.15])
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    strict = float(np.mean(np.abs(signs @ d / len(d)) >= abs(d.mean())))
    assert strict == 4 / 64  # the float ties lost without a tolerance
    assert enumerated_p_values(d)[0] == 8 / 64
    assert sign_flip_test(d)[0] == 8 / 64


def test_t_interval_equals_scipy_and_needs_two_runs():
    values = np.array([0.021, -0.004, 0.013])
    low, high = t_interval(values)
    reference = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert (low, high) == pytest.approx(reference, abs=1e-15)
    assert high - low > 0.04  # t(2) = 4.30: wide, as three runs warrant
    with pytest.raises(ValueError, match="two runs"):
        t_interval(values[:1])


def test_t_interval_keeps_its_level_at_three_runs_where_a_run_bootstrap_does_not():
    # 4,000 studies of 3 runs with Δ per run ~ N(2, 3²) pp: the t interval covers the true 2 pp
    # at its 95 % (binomial sd ≈ 0.0034); a percentile bootstrap of the three runs' mean, as the
    # report once drew, spans little more than their range and covers far less (≈ 0.75)
    rng = np.random.default_rng(3)
    studies = rng.normal(2.0, 3.0, (4_000, 3))
    covered = np.mean([low <= 2.0 <= high for low, high in map(t_interval, studies)])
    drawn = rng.integers(3, size=(4_000, 1_000, 3))  # 1,000 resamples of each study's runs
    means = np.take_along_axis(studies[:, None, :], drawn, axis=2).mean(axis=2)
    low, high = np.quantile(means, [0.025, 0.975], axis=1)
    bootstrap = float(np.mean((low <= 2.0) & (2.0 <= high)))
    print(f"\ncoverage at 3 runs: t interval {covered:.3f}, run bootstrap {bootstrap:.3f}")
    assert covered == pytest.approx(0.95, abs=0.015)
    assert bootstrap < 0.85


def test_runs_to_claim_is_where_holm_can_first_accept_the_smallest_p():
    # 2/2^n < 0.05/m: one comparison needs 6 runs, a family of 4 (Table 4's modules) 8, and a
    # family of 5 (those and one contrast) 8 too: 2/2^8 = 0.0078 < 0.01
    assert [runs_to_claim(m) for m in (1, 2, 4, 5, 10)] == [6, 7, 8, 8, 9]
    for family in (1, 4, 10):
        runs = runs_to_claim(family)
        assert smallest_p_value(runs) * family < ALPHA <= smallest_p_value(runs - 1) * family


def test_a_run_with_no_difference_cannot_lower_the_sign_flip_floor():
    # Δ = 0 flips to itself: [0, 0.1, 0.2] has 4 distinct sign patterns, not 8, so p ≥ 2/4
    p, smallest = sign_flip_test(np.array([0.0, 0.1, 0.2]))
    assert p == pytest.approx(0.5) and smallest == 0.5
    assert sign_flip_test(np.zeros(3)) == (1.0, 1.0)


DEEPSIG_SEED = 1
DEEPSIG_ITERATIONS = 1000  # deepsig's default, for the check with independent random draws
REPLAYED_ITERATIONS = 100  # for the checks on the same draws: exact, so fewer suffice
DEEPSIG_CODE = textwrap.dedent(
    """
    import json, sys
    try:
        import numpy as np
        from deepsig import aso
        from deepsig.aso import compute_violation_ratio
    except Exception as error:  # not installed, or broken: the test skips
        print(json.dumps({"unavailable": repr(error)}))
        sys.exit(0)
    request = json.load(sys.stdin)
    pairs = [(np.array(a), np.array(b)) for a, b in request["pairs"]]
    ratio = [float(compute_violation_ratio(scores_a=a, scores_b=b, dt=0.005)) for a, b in pairs]
    options = dict(seed=request["seed"], show_progress=False)
    full = float(aso(*pairs[0], num_bootstrap_iterations=request["full"], **options))
    options["num_bootstrap_iterations"] = request["replayed"]
    eps = [float(aso(a, b, **options)) for a, b in pairs[:3]]
    three = float(aso(*pairs[0], num_comparisons=3, **options))
    print(json.dumps({"ratio": ratio, "aso_full": full, "aso": eps, "aso_3": three}))
    """
)


def aso_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Three fixed pairs of run accuracies with ε_min strictly inside (0, 1): equal lengths,
    unequal lengths, and many ties (rounded to whole points)."""
    rng = np.random.default_rng(20190)
    return [
        (rng.normal(0.645, 0.020, 40).round(4), rng.normal(0.640, 0.010, 40).round(4)),
        (rng.normal(0.700, 0.012, 30).round(4), rng.normal(0.695, 0.015, 18).round(4)),
        (rng.normal(0.620, 0.012, 25).round(2), rng.normal(0.620, 0.012, 20).round(2)),
    ]


def deepsig_results() -> dict:
    """deepsig's numbers for `aso_pairs`, computed in a fresh interpreter: importing deepsig
    sets joblib's loky pickler to dill for the whole process, and its `aso` reseeds NumPy's
    global generator; neither may leak into the test process."""
    pairs = aso_pairs()
    pairs += [(b, a) for a, b in pairs] + [(pairs[0][0], pairs[0][0].copy())]
    request = {
        "seed": DEEPSIG_SEED, "full": DEEPSIG_ITERATIONS, "replayed": REPLAYED_ITERATIONS,
        "pairs": [(a.tolist(), b.tolist()) for a, b in pairs],
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", DEEPSIG_CODE], input=json.dumps(request),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def deepsig_or_skip() -> dict:
    result = deepsig_results()
    if "unavailable" in result:
        pytest.skip(f"deepsig is not importable: {result['unavailable']}")
    return result


class ReplayedDraws:
    """Stands in for `np.random.default_rng(seed)` inside `aso`: hands out the uniforms deepsig's
    bootstrap draws. deepsig's iteration i (1-based) reseeds NumPy's global generator with
    seed + i, then draws len(a) uniforms for A and len(b) for B (`get_bootstrapped_violation_
    ratios`); `aso` asks for all of A's as one (iterations, len(a)) array, then all of B's."""

    def __init__(self, seed: int, iterations: int, sizes: tuple[int, int]) -> None:
        states = [np.random.RandomState(seed + i) for i in range(1, iterations + 1)]
        draws = [[state.uniform(0, 1, size) for size in sizes] for state in states]
        self.pending = [np.array([row[0] for row in draws]), np.array([row[1] for row in draws])]

    def uniform(self, low: float, high: float, size: tuple[int, int]) -> np.ndarray:
        drawn = self.pending.pop(0)
        assert (low, high, size) == (0, 1, drawn.shape), "aso draws differently from deepsig"
        return drawn


def aso_on_deepsig_draws(
    monkeypatch: pytest.MonkeyPatch, a: np.ndarray, b: np.ndarray, **options: int
) -> float:
    """`aso(a, b)` fed with the uniforms deepsig's own bootstrap uses for DEEPSIG_SEED."""
    sizes, iterations = (len(a), len(b)), REPLAYED_ITERATIONS
    with monkeypatch.context() as patch:
        patch.setattr(np.random, "default_rng", lambda seed: ReplayedDraws(seed, iterations, sizes))
        return aso(a, b, iterations=iterations, seed=DEEPSIG_SEED, **options)


def test_violation_ratio_and_aso_equal_deepsig(monkeypatch: pytest.MonkeyPatch):
    # One test, so that one deepsig interpreter (≈ 6 s) serves every check even under xdist.
    reference = deepsig_or_skip()
    check_violation_ratios(reference["ratio"])
    check_aso_on_deepsig_draws(monkeypatch, reference)
    # Independent draws, 1000 iterations each (defaults): equal within bootstrap noise; the sd
    # of ε_min over seeds is ≈ 0.005 for this pair (100 seeds of ours), so of the difference
    # ≈ 0.007: ±0.03 is over 4 sd.
    ours, theirs = aso(*aso_pairs()[0]), reference["aso_full"]
    print(f"ASO ε_min, own draws, {DEEPSIG_ITERATIONS} iterations: ours {ours:.4f}, "
          f"deepsig {theirs:.4f}")  # fmt: skip
    assert 0 < ours < 1 and ours == pytest.approx(theirs, abs=0.03)


def check_violation_ratios(reference: list[float]) -> None:
    """ε_W2 equals deepsig's `compute_violation_ratio(dt=0.005)` on the pairs, both ways round,
    and on two identical samples (zero W2 distance: 0.5)."""
    pairs = aso_pairs()
    pairs += [(b, a) for a, b in pairs] + [(pairs[0][0], pairs[0][0].copy())]
    ours = [float(violation_ratio(a, b)) for a, b in pairs]
    print(f"\nviolation ratios: ours {np.round(ours, 4)}, deepsig {np.round(reference, 4)}")
    assert ours == pytest.approx(reference, abs=1e-12, rel=0)
    assert 0 < ours[0] < 0.5 < ours[3] < 1 and ours[-1] == 0.5  # not trivially 0 or 1


def check_aso_on_deepsig_draws(monkeypatch: pytest.MonkeyPatch, reference: dict) -> None:
    """On deepsig's own bootstrap draws, the same algorithm gives the same ε_min up to float
    summation order, with 1 and with 3 comparisons."""
    pairs = aso_pairs()
    for (a, b), expected in zip(pairs, reference["aso"], strict=True):
        replayed = aso_on_deepsig_draws(monkeypatch, a, b)
        print(f"\nASO ε_min, {len(a)} vs {len(b)} runs, deepsig's draws: ours {replayed:.6f}, "
              f"deepsig {expected:.6f}")  # fmt: skip
        assert 0 < expected < 1
        assert replayed == pytest.approx(expected, rel=1e-9)
    three = aso_on_deepsig_draws(monkeypatch, *pairs[0], comparisons=3)
    print(f"ASO ε_min, comparisons=3: ours {three:.6f}, deepsig {reference['aso_3']:.6f}")
    assert three == pytest.approx(reference["aso_3"], rel=1e-9)
    # For one seed the bootstrap draws are the same, so the bound's distance from ε_W2 scales by
    # z(0.95 + 0.05/3) / z(0.95) ≈ 1.115: num_comparisons=3 did raise deepsig's confidence.
    observed = float(violation_ratio(*pairs[0]))
    z_ratio = stats.norm.ppf(1 - (0.95 + 0.05 / 3)) / stats.norm.ppf(1 - 0.95)
    rise = (reference["aso_3"] - observed) / (reference["aso"][0] - observed)
    assert rise == pytest.approx(z_ratio, rel=1e-9)


def test_holm_matches_the_worked_example_and_leaves_nan_out_of_the_family():
    # Holm's procedure, the worked example on Wikipedia ("Holm–Bonferroni method"): p = 0.01,
    # 0.04, 0.03, 0.005 at α = 0.05 rejects H1 and H4 only. Adjusted, sorted: 4·0.005 = 0.02,
    # 3·0.01 = 0.03, 2·0.03 = 0.06, max(1·0.04, 0.06) = 0.06 (monotone).
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < ALPHA for p in adjusted] == [True, False, False, True]
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    nan = float("nan")
    with_nan = holm([0.01, nan, 0.04, nan])  # a family of 2, not 4
    assert with_nan[0] == pytest.approx(0.02) and with_nan[2] == pytest.approx(0.04)
    assert math.isnan(with_nan[1]) and math.isnan(with_nan[3])
    assert all(math.isnan(p) for p in holm([nan, nan])) and holm([]) == []


def test_t_test_power_matches_g_power_and_a_monte_carlo_paired_t_test():
    # G*Power 3, t tests, "Means: difference from constant (one sample case)" (= paired t on the
    # differences): d = 0.5, α = 0.05 two-tailed, n = 34 → actual power 0.8077775.
    assert t_test_power(0.5, 1.0, 34) == pytest.approx(0.8077775, abs=1e-6)
    assert t_test_power(0.05, 0.1, 34) == pytest.approx(0.8077775, abs=1e-6)  # d = Δ/sd only
    assert t_test_power(-0.5, 1.0, 34) == pytest.approx(0.8077775, abs=1e-6)  # two-sided
    for effect, runs in [(0.5, 34), (0.8, 10)]:
        samples = np.random.default_rng(runs).normal(effect, 1.0, (20_000, runs))
        simulated = float(np.mean(stats.ttest_1samp(samples, 0.0, axis=1).pvalue < ALPHA))
        # binomial sd of the simulated power ≤ √(0.25/20000) ≈ 0.0035
        assert t_test_power(effect, 1.0, runs) == pytest.approx(simulated, abs=0.02)
    assert math.isnan(t_test_power(0.5, 1.0, 1)) and math.isnan(t_test_power(0.5, 0.0, 10))


def test_runs_for_power_is_the_fewest_runs_and_never_below_the_sign_flip_floor():
    assert smallest_p_value(5) == 0.0625 and smallest_p_value(6) == 2 / 64
    assert smallest_p_value(1) == 1.0
    for effect in (0.2, 0.4, 0.5, 0.8):  # more than 10 runs needed: the t-test's power
        runs = runs_for_power(effect, 1.0)
        assert runs is not None and runs > 10
        assert t_test_power(effect, 1.0, runs) >= 0.8 > t_test_power(effect, 1.0, runs - 1)
    assert runs_for_power(0.5, 1.0) == 34
    assert runs_for_power(0.2, 1.0) == 199  # the fewest, also past 64 runs
    # Δ/sd = 1 needs 11: the exact test's power at 10 runs is 0.797 (200,000 draws), just short
    assert runs_for_power(1.0, 1.0) == 11
    for effect in (1.1, 1.5):  # 10 runs or fewer: the exact test's own (simulated) power
        runs = runs_for_power(effect, 1.0)
        assert runs is not None and 6 <= runs <= 10
        assert sign_flip_power(effect, 1.0, runs) >= 0.8 > sign_flip_power(effect, 1.0, runs - 1)
    # at 6 runs the exact test rejects only when all signs agree: Φ(1.5)^6 + Φ(−1.5)^6 ≈ 0.66,
    # well below what the t-test promises there
    exact_6 = stats.norm.cdf(1.5) ** 6 + stats.norm.cdf(-1.5) ** 6
    assert sign_flip_power(1.5, 1.0, 6) == pytest.approx(exact_6, abs=0.03)
    assert t_test_power(1.5, 1.0, 6) > 0.8 > sign_flip_power(1.5, 1.0, 6)
    # A large effect: the t-test has power at 3 runs, but the sign-flip test needs 2/2^n ≤ α.
    assert t_test_power(4.0, 1.0, 3) > 0.8
    assert runs_for_power(4.0, 1.0) == 6
    assert runs_for_power(4.0, 1.0, alpha=ALPHA / 3) == 7  # 2/2^6 > 0.0167 ≥ 2/2^7
    assert sign_flip_power(4.0, 1.0, 5) == 0.0
    assert runs_for_power(0.0, 1.0) is None and runs_for_power(0.5, 0.0) is None


def test_runs_for_power_near_the_target_is_not_decided_by_simulation_noise():
    # Δ per run +10, 0, +10 pp at α = 0.025 (Holm's first step over 2): the exact test's power
    # at 10 runs is 0.7922 ± 0.0009 (200,000 draws, an independent simulation), so 10 runs fall
    # short; 2,000 draws put it at 0.8075 and said 10
    differences = np.array([0.10, 0.0, 0.10])
    effect, sd = differences.mean(), differences.std(ddof=1)
    assert sign_flip_power(effect, sd, 10, ALPHA / 2) == pytest.approx(0.7922, abs=0.006)
    assert runs_for_power(effect, sd, ALPHA / 2) == 11


def test_aso_below_its_threshold_happens_by_chance_between_identical_models_with_few_runs():
    # what the comparisons legend says of ASO at 3 runs: descriptive only, no verdict rests on it
    rng, draws, chance = np.random.default_rng(5), 100, 0
    for i in range(draws):
        a, b = rng.normal(0.6, 0.02, (2, 3))
        chance += aso(a, b, seed=i) < 0.2 or aso(b, a, seed=i) < 0.2
    assert chance / draws > 0.05  # about 0.18


def test_power_stays_defined_for_large_effects():
    # Δ/sd = 5 at 6 runs: the power is 1 to many digits (≈ 1 − 5e-13), and 6 runs suffice.
    assert t_test_power(5.0, 1.0, 6) == pytest.approx(1.0)
    assert runs_for_power(5.0, 1.0) == 6


# --- 4. One run ------------------------------------------------------------------------------


def test_one_run_reports_no_training_variance():
    correct = np.random.default_rng(9).random((2, 300)) < 0.6
    result = compare_over_runs([PairedRun(1, 0, correct[1].astype(int), correct[0].astype(int))])
    assert result.replicated is False and result.runs == 1
    assert result.smallest_p == 1.0
    assert result.mean_difference == pytest.approx(correct[1].mean() - correct[0].mean())
    for value in (result.p_value, result.ci_low, result.ci_high, result.difference_sd,
                  result.aso_model_better, result.aso_baseline_better):  # fmt: skip
        assert math.isnan(value)

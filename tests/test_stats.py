"""Study statistics: t summaries against scipy, and the bootstrap, Holm, DeLong and sign-flip
tests against hand computations."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_ganaug.metrics.stats import (
    UNIT,
    RunOutputs,
    auc_rows,
    bootstrap_difference,
    bootstrap_metric,
    delong_test,
    estimate,
    holm,
    paired_difference,
    sign_flip_p,
)


def test_estimate_matches_scipy_t_interval():
    values = [0.81, 0.78, 0.84, 0.80, 0.79]
    est = estimate(values)
    low, high = scipy_stats.t.interval(0.95, df=4, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert est.n == 5
    assert est.mean == pytest.approx(np.mean(values))
    assert est.std == pytest.approx(np.std(values, ddof=1))
    assert (est.ci_low, est.ci_high) == pytest.approx((low, high))


def test_intervals_of_rates_stay_in_their_range():
    """Two seeds of an accuracy: the t interval is [-0.19, 1.33] unclipped; a rate's is clipped
    to [0, 1], and a difference of rates to [-1, 1]. The mean, std and p are untouched."""
    values = [0.3, 0.9]
    free, clipped = estimate(values), estimate(values, bounds=UNIT)
    assert free.ci_low < 0 and free.ci_high > 1
    assert (clipped.ci_low, clipped.ci_high) == (0.0, 1.0)
    assert (clipped.mean, clipped.std) == (free.mean, free.std)
    assert estimate([0.5, 0.52, 0.51], bounds=UNIT) == estimate([0.5, 0.52, 0.51])
    diff = paired_difference([1.0, 0.0], [0.0, 0.5], bounds=UNIT)
    assert (diff.estimate.ci_low, diff.estimate.ci_high) == (-1.0, 1.0)
    assert diff.p_value == paired_difference([1.0, 0.0], [0.0, 0.5]).p_value


def test_estimate_other_confidence_level():
    values = [1.0, 2.0, 4.0]
    est = estimate(values, confidence=0.9)
    low, high = scipy_stats.t.interval(0.9, df=2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (est.ci_low, est.ci_high) == pytest.approx((low, high))


def test_estimate_drops_nan_and_needs_two_values_for_spread():
    est = estimate([0.5, math.nan, 0.7])
    assert est.n == 2 and est.mean == pytest.approx(0.6)
    single = estimate([0.9])
    assert single.mean == 0.9 and single.n == 1
    assert math.isnan(single.std) and math.isnan(single.ci_low)
    assert estimate([]).n == 0 and math.isnan(estimate([]).mean)


def test_paired_difference_matches_scipy_ttest_rel():
    a = [0.82, 0.85, 0.80, 0.86]
    b = [0.80, 0.81, 0.79, 0.82]
    result = paired_difference(a, b)
    reference = scipy_stats.ttest_rel(a, b)
    diffs = np.subtract(a, b)
    low, high = scipy_stats.t.interval(0.95, df=3, loc=diffs.mean(), scale=scipy_stats.sem(diffs))
    assert result.estimate.mean == pytest.approx(diffs.mean())
    assert result.p_value == pytest.approx(reference.pvalue)
    assert (result.estimate.ci_low, result.estimate.ci_high) == pytest.approx((low, high))


def test_paired_difference_drops_incomplete_pairs_and_constant_shifts():
    result = paired_difference([0.5, math.nan, 0.7, 0.9], [0.4, 0.3, 0.5, 0.6])
    reference = scipy_stats.ttest_rel([0.5, 0.7, 0.9], [0.4, 0.5, 0.6])
    assert result.estimate.n == 3
    assert result.p_value == pytest.approx(reference.pvalue)
    assert paired_difference([0.6, 0.7], [0.6, 0.7]).p_value == 1.0
    # Both seeds moved by +0.5: no t statistic; the exact sign-flip p is 2 of 4 patterns.
    assert paired_difference([1.5, 2.5], [1.0, 2.0]).p_value == 0.5
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_sign_flip_p_is_exact():
    assert sign_flip_p([0.1] * 5) == pytest.approx(2 / 32)  # never 0 for equal differences
    # |mean| of [1, 2, -1] is 2/3; flips reaching it: (1,2,-1),(-1,-2,1),(1,2,1),(-1,-2,-1),
    # (-1,2,1),(1,-2,-1) -> 6 of 8.
    assert sign_flip_p([1.0, 2.0, -1.0]) == pytest.approx(6 / 8)


def test_holm_against_a_hand_computation():
    # sorted: .01*3 = .03; .03*2 = .06; .04*1 = .04 -> running max .06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and adjusted[2] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])


def _runs(correct: list[list[bool]], minority: int = 1) -> RunOutputs:
    """Runs whose decisions are right exactly where `correct` says (one row per seed)."""
    correct = np.asarray(correct)
    labels = np.arange(correct.shape[1]) % 2
    predictions = np.where(correct, labels[None, :], 1 - labels[None, :])
    return RunOutputs(tuple(range(len(correct))), labels, predictions,
                      predictions.astype(float), minority)


def test_two_level_bootstrap_interval_against_a_hand_computation():
    # Seed 0 right on every image, seed 1 wrong on every image: a resample of the two seeds has
    # mean accuracy 0 (p 1/4), 1/2 (p 1/2) or 1 (p 1/4) whatever images are drawn, so the 95%
    # percentile interval is [0, 1] around the point estimate 1/2.
    result = bootstrap_metric(_runs([[True] * 6, [False] * 6]), "accuracy", replicates=4000)
    assert result.mean == pytest.approx(0.5)
    assert (result.ci_low, result.ci_high) == (0.0, 1.0)


def test_paired_bootstrap_difference_against_a_hand_computation():
    # a is right on both images, b on image 0 only: per replicate a - b = share of image-1 draws
    # among the two resampled images: 0 (p 1/4), 1/2 (p 1/2), 1 (p 1/4), the same for any seeds.
    a, b = _runs([[True, True]] * 3), _runs([[True, False]] * 3)
    result = bootstrap_difference(a, b, "accuracy", replicates=20000, seed=1)
    assert result.mean == pytest.approx(0.5)
    assert (result.ci_low, result.ci_high) == (0.0, 1.0)
    assert result.p_value == pytest.approx(2 * 0.25, abs=0.02)  # 2 * P(diff <= 0)
    same = bootstrap_difference(a, a, "accuracy", replicates=200)
    assert same.mean == 0 and same.p_value == 1.0


def test_bootstrap_recall_and_auc_rows_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (3, 40))
    scores = rng.random((3, 40))
    assert auc_rows(labels == 1, scores) == pytest.approx(
        [roc_auc_score(labels[i], scores[i]) for i in range(3)])


def _delong_by_definition(labels, a, b):
    """DeLong's structural components straight from the 1988 paper, O(m n)."""
    labels = np.asarray(labels, bool)
    out = []
    for scores in (np.asarray(a), np.asarray(b)):
        x, y = scores[labels], scores[~labels]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.stack([v10a, v10b]))
    s01 = np.cov(np.stack([v01a, v01b]))
    s = s10 / m + s01 / n
    z = (auc_a - auc_b) / math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return auc_a, auc_b, z


def test_delong_matches_its_definition_and_is_null_for_equal_scores():
    labels = [1, 1, 1, 0, 0, 0, 0, 1, 0, 1]
    a = [0.9, 0.8, 0.4, 0.3, 0.5, 0.1, 0.2, 0.7, 0.4, 0.6]
    b = [0.6, 0.9, 0.3, 0.5, 0.2, 0.4, 0.1, 0.5, 0.7, 0.8]
    result = delong_test(labels, a, b)
    auc_a, auc_b, z = _delong_by_definition(labels, a, b)
    assert (result["auc_a"], result["auc_b"]) == pytest.approx((auc_a, auc_b))
    assert auc_a == pytest.approx(23.5 / 25) and auc_b == pytest.approx(19.5 / 25)
    assert result["z"] == pytest.approx(z)
    assert result["p_value"] == pytest.approx(2 * scipy_stats.norm.sf(abs(z)))
    assert delong_test(labels, a, a)["p_value"] == 1.0

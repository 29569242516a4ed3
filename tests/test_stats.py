"""Seed statistics agree with scipy's t distribution and paired t-test."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from keras_ganaug.stats import estimate, paired_difference


def test_estimate_matches_scipy_t_interval():
    values = [0.81, 0.78, 0.84, 0.80, 0.79]
    est = estimate(values)
    low, high = scipy_stats.t.interval(0.95, df=4, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert est.n == 5
    assert est.mean == pytest.approx(np.mean(values))
    assert est.std == pytest.approx(np.std(values, ddof=1))
    assert (est.ci_low, est.ci_high) == pytest.approx((low, high))
    assert est.half_width == pytest.approx((high - low) / 2)


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
    assert paired_difference([1.5, 2.5], [1.0, 2.0]).p_value == 0.0
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])

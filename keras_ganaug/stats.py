"""Summary statistics over seeds: mean, std, 95% t confidence intervals, paired differences.

A study runs each (method, N) cell with a few seeds. The seed fixes the real minority subset and the
initialisations, so two methods at the same N and seed saw the same real images: their difference is
paired, and a paired t-test is far more sensitive than comparing two independent means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Estimate:
    """Mean of `n` values with sample std (ddof=1) and a two-sided t confidence interval."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences a - b, its t interval, and the paired t-test p-value."""

    estimate: Estimate
    p_value: float


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def estimate(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean, std and t interval of the finite values; std and interval are NaN below two values."""
    array = _finite(values)
    n = len(array)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(array.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, n)
    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return Estimate(mean, std, mean - half, mean + half, n)


def paired_difference(a: Sequence[float], b: Sequence[float],
                      confidence: float = 0.95) -> PairedDifference:
    """Paired a - b over aligned seeds (pairs with a NaN on either side are dropped)."""
    a_arr, b_arr = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal lengths, got {len(a_arr)} and {len(b_arr)}")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    diff = a_arr[keep] - b_arr[keep]
    est = estimate(diff, confidence)
    if est.n < 2:
        return PairedDifference(est, math.nan)
    if est.std == 0:
        # Every seed moved by the same amount: no spread to test against.
        return PairedDifference(est, 1.0 if est.mean == 0 else 0.0)
    t_stat = est.mean / (est.std / math.sqrt(est.n))
    p_value = float(2 * scipy_stats.t.sf(abs(t_stat), df=est.n - 1))
    return PairedDifference(est, p_value)

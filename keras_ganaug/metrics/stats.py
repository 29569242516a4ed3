"""Statistics of a study: seed summaries, paired two-level bootstraps, Holm, DeLong.

A study runs each (method, N) cell with several seeds on one test split. The seed fixes the real
minority subset and the initialisations, so two methods at the same N and seed saw the same real
images, and every run is scored on the same test images: differences are paired at both levels.
The intervals the report gives come from a paired two-level bootstrap (resample seeds, then test
images), so they carry both the run-to-run spread and the test set's sampling error (about .019
binomial SE on accuracy at 660 test images, more than the seed spread of a stable method).
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


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences a - b, its t interval, and the paired t-test p-value."""

    estimate: Estimate
    p_value: float


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


UNIT = (0.0, 1.0)  # the range of accuracy, AUC, recall and the other rates the study reports
UNBOUNDED = (-math.inf, math.inf)


def estimate(values: Sequence[float], confidence: float = 0.95,
             bounds: tuple[float, float] = UNBOUNDED) -> Estimate:
    """Mean, std and t interval of the finite values; std and interval are NaN below two values.

    `bounds`: the range the quantity cannot leave (UNIT for a rate), to which the interval is
    clipped."""
    array = _finite(values)
    n = len(array)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(array.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, n)
    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    # A t interval is symmetric and blind to the range: with 2 seeds an accuracy's reaches
    # [-0.19, 1.33]. Clipped, it still covers the true value whenever the unclipped one does
    # (that value lies in the range), and no longer prints impossible bounds.
    low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return Estimate(mean, std, low, high, n)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                      bounds: tuple[float, float] = UNBOUNDED) -> PairedDifference:
    """Paired a - b over aligned seeds (pairs with a NaN on either side are dropped); `bounds`:
    the range of a and b, so the difference's interval stays within what a - b can be."""
    a_arr, b_arr = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal lengths, got {len(a_arr)} and {len(b_arr)}")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    diff = a_arr[keep] - b_arr[keep]
    est = estimate(diff, confidence, (bounds[0] - bounds[1], bounds[1] - bounds[0]))
    if est.n < 2:
        return PairedDifference(est, math.nan)
    if est.std == 0:
        # Every seed moved by the same amount: the t statistic is undefined (not infinite), so
        # the exact sign-flip test answers: 2 of the 2^n sign patterns are that extreme.
        return PairedDifference(est, sign_flip_p(diff))
    t_stat = est.mean / (est.std / math.sqrt(est.n))
    p_value = float(2 * scipy_stats.t.sf(abs(t_stat), df=est.n - 1))
    return PairedDifference(est, p_value)


def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact two-sided p of the paired randomization test: the share of the 2^n sign flips of the
    differences whose mean is at least as far from 0 as the observed one (n up to 20)."""
    diff = _finite(differences)
    n = len(diff)
    if n == 0 or n > 20:
        raise ValueError(f"the exact sign-flip test needs 1 to 20 differences, got {n}")
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
    means = np.abs(signs @ diff) / n
    return float(np.mean(means >= abs(diff.mean()) - 1e-12))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted as a test)."""
    p = np.asarray(p_values, np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


# Per-image metrics, vectorised over bootstrap replicates -----------------------------------------

def auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Binary ROC AUC of each row: labels, scores [R, N] -> [R] (Mann-Whitney with mid-ranks)."""
    labels = np.asarray(labels, bool)
    ranks = scipy_stats.rankdata(scores, axis=1)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def run_metric(metric: str, labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray,
               minority: int) -> np.ndarray:
    """`metric` of each row of per-image arrays [R, N] -> [R].

    accuracy, balanced_accuracy, minority_recall from the decisions; roc_auc from the minority's
    score (binary sets; the report gives AUC intervals only there).
    """
    correct = predictions == labels
    if metric == "accuracy":
        return correct.mean(axis=1)
    if metric == "minority_recall":
        mask = labels == minority
        return (correct & mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    if metric == "balanced_accuracy":
        recalls = []
        for c in np.unique(labels):
            mask = labels == c
            recalls.append((correct & mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1))
        return np.mean(recalls, axis=0)
    if metric == "roc_auc":
        return auc_rows(labels == minority, scores)
    raise ValueError(f"unknown metric {metric!r}")


@dataclass(frozen=True)
class RunOutputs:
    """Per-test-image outputs of the runs of one method at one N, one row per seed."""

    seeds: tuple[int, ...]
    labels: np.ndarray       # [N] true classes, the same test split for every seed
    predictions: np.ndarray  # [S, N] decisions at the val-tuned threshold
    scores: np.ndarray       # [S, N] probability of the minority class
    minority: int


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate (mean over seeds on the full test set), percentile interval, two-sided p
    of "the value is 0" (for differences), from `replicates` paired two-level resamples."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    replicates: int


def _two_level_indices(n_seeds: int, n_images: int, replicates: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, n_seeds, (replicates, n_seeds)),
            rng.integers(0, n_images, (replicates, n_images)))


def _replicate_values(run: RunOutputs, metric: str, seed_idx: np.ndarray,
                      image_idx: np.ndarray, rows: list[int]) -> np.ndarray:
    """Metric per replicate: mean over the resampled seeds, each on the resampled images."""
    per_seed = []
    for s in range(len(rows)):
        picked = np.asarray(rows)[seed_idx[:, s]]  # [R] which run each replicate takes here
        labels = run.labels[image_idx]
        predictions = run.predictions[picked[:, None], image_idx]
        scores = run.scores[picked[:, None], image_idx]
        per_seed.append(run_metric(metric, labels, predictions, scores, run.minority))
    return np.nanmean(np.stack(per_seed, axis=1), axis=1)


def _summarise(point: float, values: np.ndarray, confidence: float) -> BootstrapResult:
    values = values[np.isfinite(values)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    # Two-sided bootstrap p: twice the smaller share of replicates on either side of 0, with the
    # observed sample counted once so that p is never exactly 0.
    below = (np.sum(values <= 0) + 1) / (len(values) + 1)
    above = (np.sum(values >= 0) + 1) / (len(values) + 1)
    return BootstrapResult(point, float(low), float(high), float(min(1.0, 2 * min(below, above))),
                           len(values))


def _full_value(run: RunOutputs, metric: str, rows: list[int]) -> float:
    """Mean over the given seeds' runs of `metric` on the whole test split."""
    labels = np.tile(run.labels, (len(rows), 1))
    return float(np.nanmean(run_metric(metric, labels, run.predictions[rows], run.scores[rows],
                                       run.minority)))


def bootstrap_metric(run: RunOutputs, metric: str, replicates: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> BootstrapResult:
    """Mean of `metric` over seeds and its two-level bootstrap interval (seeds, then images)."""
    rows = list(range(len(run.seeds)))
    seed_idx, image_idx = _two_level_indices(len(rows), len(run.labels), replicates, seed)
    values = _replicate_values(run, metric, seed_idx, image_idx, rows)
    return _summarise(_full_value(run, metric, rows), values, confidence)


def bootstrap_difference(a: RunOutputs, b: RunOutputs, metric: str, replicates: int = 2000,
                         seed: int = 0, confidence: float = 0.95) -> BootstrapResult:
    """a - b of `metric`, paired at both levels: the same resampled seeds and test images for both.

    Only seeds both have are used; the test labels must be the same (one test split).
    """
    if not np.array_equal(a.labels, b.labels):
        raise ValueError("paired runs must be scored on the same test images")
    common = sorted(set(a.seeds) & set(b.seeds))
    rows_a = [a.seeds.index(s) for s in common]
    rows_b = [b.seeds.index(s) for s in common]
    seed_idx, image_idx = _two_level_indices(len(common), len(a.labels), replicates, seed)
    diff = (_replicate_values(a, metric, seed_idx, image_idx, rows_a)
            - _replicate_values(b, metric, seed_idx, image_idx, rows_b))
    point = _full_value(a, metric, rows_a) - _full_value(b, metric, rows_b)
    return _summarise(point, diff, confidence)


# DeLong's test of two correlated AUCs ------------------------------------------------------------

def delong_test(labels: Sequence[int], scores_a: Sequence[float],
                scores_b: Sequence[float]) -> dict[str, float]:
    """DeLong, DeLong & Clarke-Pearson (1988): are two AUCs on the same test images different?

    labels: 1 positive, 0 negative. Returns both AUCs, their covariance-based z and two-sided p.
    The structural components use mid-ranks (Sun & Xu 2014), so it is O(n log n).
    """
    labels = np.asarray(labels, bool)
    scores = np.stack([np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)])
    pos, neg = scores[:, labels], scores[:, ~labels]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong's test needs at least two positives and two negatives")
    rank_all = scipy_stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    rank_pos = scipy_stats.rankdata(pos, axis=1)
    rank_neg = scipy_stats.rankdata(neg, axis=1)
    aucs = (rank_all[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (rank_all[:, :m] - rank_pos) / n        # per positive: share of negatives below it
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # per negative: share of positives above it
    covariance = np.cov(v10) / m + np.cov(v01) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = aucs[0] - aucs[1]
    if variance <= 0:
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    else:
        z = difference / math.sqrt(variance)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": float(z),
            "p_value": float(2 * scipy_stats.norm.sf(abs(z)))}

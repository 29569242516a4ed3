"""Classification metrics on a held-out split (their figures are in plots.py).

Scores are class probabilities [N, K]; the predicted class is their argmax. ROC AUC is the binary
AUC of the positive class (index 1) for two classes and the macro one-vs-rest AUC for more. The
numbers come from scikit-learn (maintained, tested); this module fixes which of its options the
package reports, so every run and every study cell means the same thing by "AUC".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
                           minority: str | None = None, y_pred: np.ndarray | None = None) -> dict:
    """y_true [N] ints and scores [N, K] -> JSON-ready dict of accuracy, AUC, per-class P/R/F1, ...

    The predicted class is the argmax of the scores unless `y_pred` gives the decisions (those of a
    tuned threshold, see `decide`); ROC AUC always comes from the scores.
    """
    y_true = np.asarray(y_true, np.int64)
    scores = np.asarray(scores, np.float64)
    n_classes = len(class_names)
    if scores.ndim != 2 or scores.shape != (len(y_true), n_classes):
        raise ValueError(f"scores must be [N={len(y_true)}, K={n_classes}], got {scores.shape}")
    y_pred = scores.argmax(axis=1) if y_pred is None else np.asarray(y_pred, np.int64)
    labels = np.arange(n_classes)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)}
    result = {
        "n_test": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "roc_auc": roc_auc(y_true, scores),
        "macro_f1": float(np.mean(f1)),
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }
    if minority is not None:
        result["minority"] = minority
        result["minority_recall"] = per_class[minority]["recall"]
    return result


# The decision rule: chosen on the validation split, free of the class prior -------------------

THRESHOLD_RESAMPLES = 200  # val resamples whose best thresholds are pooled (see tune_decision)


def _best_threshold(score: np.ndarray, positive: np.ndarray) -> float:
    """The threshold maximising balanced accuracy of "minority iff score >= t": the middle of
    the best plateau (ties: the median plateau), not the edge of a val score."""
    values = np.unique(score)
    # Plateaus: t in (values[k-1], values[k]] all decide alike; plus "never" above the top.
    uppers = np.concatenate([values, [np.inf]])
    lowers = np.concatenate([[-np.inf], values])
    tpr = (score[positive][None, :] >= uppers[:, None]).mean(axis=1)
    tnr = (score[~positive][None, :] < uppers[:, None]).mean(axis=1)
    balanced = tpr + tnr
    best = np.flatnonzero(np.isclose(balanced, balanced.max()))
    k = best[len(best) // 2]
    low, high = lowers[k], uppers[k]
    if not np.isfinite(low):
        return float(high) / 2
    if not np.isfinite(high):
        return float(low + (1.0 - low) / 2)
    return float((low + high) / 2)


def tune_decision(y_val: np.ndarray, val_scores: np.ndarray, minority_index: int,
                  train_priors: Sequence[float], seed: int = 0) -> dict:
    """The decision rule the val split picks, as a JSON-ready dict `decide` applies.

    Two classes: predict the minority when its probability reaches `threshold`, the value that
    maximises balanced accuracy on val. With 10-100 minority val images that maximum jumps from
    one plateau to another with a single image, so the threshold is the median of the best
    thresholds of THRESHOLD_RESAMPLES seeded resamples of the val split (a bagged estimate: the
    same criterion, less variance). Argmax at 0.5 instead inherits the training prior: on a nearly
    balanced test split a model trained at 1:14 then misses most of the minority.
    More classes: argmax of the probabilities divided by the effective training priors.
    """
    val_scores = np.asarray(val_scores, np.float64)
    y_val = np.asarray(y_val, np.int64)
    if val_scores.shape[1] > 2:
        priors = np.asarray(train_priors, np.float64)
        return {"rule": "argmax of probabilities / training priors", "threshold": None,
                "priors": [float(p) for p in priors / priors.sum()]}
    score = val_scores[:, minority_index]
    positive = y_val == minority_index
    rng = np.random.default_rng([seed, 5])
    pos_idx, neg_idx = np.flatnonzero(positive), np.flatnonzero(~positive)
    thresholds = []
    for _ in range(THRESHOLD_RESAMPLES):
        # Stratified: every resample keeps the val split's class counts.
        idx = np.concatenate([rng.choice(pos_idx, len(pos_idx)), rng.choice(neg_idx, len(neg_idx))])
        thresholds.append(_best_threshold(score[idx], positive[idx]))
    threshold = float(np.median(thresholds))
    decided = score >= threshold
    val_balanced = (decided[positive].mean() + (~decided[~positive]).mean()) / 2
    return {"rule": "minority if its probability >= threshold (max val balanced accuracy, "
                    f"median over {THRESHOLD_RESAMPLES} val resamples)",
            "threshold": threshold, "minority_index": int(minority_index),
            "val_balanced_accuracy": float(val_balanced)}


def decide(scores: np.ndarray, decision: dict) -> np.ndarray:
    """Class decisions [N] for scores [N, K] under a rule from `tune_decision`."""
    scores = np.asarray(scores, np.float64)
    if decision["threshold"] is None:
        return (scores / np.asarray(decision["priors"])[None, :]).argmax(axis=1)
    minority = decision["minority_index"]
    other = 1 - minority
    return np.where(scores[:, minority] >= decision["threshold"], minority, other)


def tuned_metrics(y_true: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
                  minority: str, decision: dict) -> dict:
    """The metrics at the val-tuned decision: threshold, accuracy, balanced accuracy, minority
    recall, per-class precision / recall / F1 and the confusion matrix (metrics.json "val_tuned")."""
    metrics = classification_metrics(y_true, scores, class_names, minority,
                                     y_pred=decide(scores, decision))
    keep = ("accuracy", "balanced_accuracy", "minority_recall", "macro_f1", "per_class",
            "confusion_matrix")
    return {"threshold": decision["threshold"], "rule": decision["rule"],
            **{k: metrics[k] for k in keep}}


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Binary AUC of class 1, or macro one-vs-rest AUC; None when a class is absent from y_true."""
    n_classes = scores.shape[1]
    if len(np.unique(y_true)) < n_classes:
        return None  # AUC is undefined without positives and negatives for every class
    if n_classes == 2:
        return float(skm.roc_auc_score(y_true, scores[:, 1]))
    # roc_auc_score's multi-class mode wants rows that sum to 1 exactly.
    probs = scores / scores.sum(axis=1, keepdims=True)
    return float(skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro",
                                   labels=np.arange(n_classes)))

"""Classification metrics equal scikit-learn's on the same predictions; figures are real PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from keras_ganaug.metrics.classification import classification_metrics
from keras_ganaug.plots import plot_confusion_matrix, plot_learning_curves, plot_roc


def _predictions(n: int, n_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y_true]
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, scores.astype(np.float32)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_metrics_equal_sklearn(n_classes):
    y_true, scores = _predictions(200, n_classes, seed=n_classes)
    names = [f"c{i}" for i in range(n_classes)]
    result = classification_metrics(y_true, scores, names, minority="c1")
    y_pred = scores.argmax(axis=1)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(y_true, y_pred))
    expected_auc = (skm.roc_auc_score(y_true, scores[:, 1]) if n_classes == 2 else
                    skm.roc_auc_score(y_true, scores, multi_class="ovr", average="macro"))
    assert result["roc_auc"] == pytest.approx(expected_auc, abs=1e-6)
    report = skm.classification_report(y_true, y_pred, output_dict=True, target_names=names)
    for name in names:
        for key, sk_key in (("precision", "precision"), ("recall", "recall"),
                            ("f1", "f1-score"), ("support", "support")):
            assert result["per_class"][name][key] == pytest.approx(report[name][sk_key])
    assert result["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert result["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()
    assert result["minority_recall"] == pytest.approx(report["c1"]["recall"])


def test_binary_auc_uses_the_positive_class_column():
    y_true = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.35, 0.65], [0.2, 0.8]])
    assert classification_metrics(y_true, scores, ["benign", "malignant"])["roc_auc"] == 1.0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_missing_class_gives_no_auc_and_zero_precision_instead_of_crashing():
    y_true = np.array([0, 0, 0])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    result = classification_metrics(y_true, scores, ["a", "b"], minority="b")
    assert result["roc_auc"] is None
    assert result["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["confusion_matrix"] == [[2, 1], [0, 0]]


def test_wrong_score_shape_is_rejected():
    with pytest.raises(ValueError, match="scores must be"):
        classification_metrics(np.array([0, 1]), np.array([0.2, 0.8]), ["a", "b"])


def test_figures_are_written_as_png(tmp_path):
    y_true, scores = _predictions(50, 3, seed=0)
    names = ["a", "b", "c"]
    result = classification_metrics(y_true, scores, names)
    paths = [
        plot_learning_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
                              "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]},
                             tmp_path / "curves.png"),
        plot_roc(y_true, scores, names, tmp_path / "roc.png"),
        plot_confusion_matrix(result["confusion_matrix"], names, tmp_path / "cm.png"),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "curves.png", "roc.png"]

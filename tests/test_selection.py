"""Model selection and the decision threshold are free of the class prior."""

from __future__ import annotations

import numpy as np
import pytest

from keras_ganaug.classify.selection import (
    balanced_log_loss,
    best_epoch,
    early_stopping,
    validation_scores,
)
from keras_ganaug.metrics.classification import decide, tune_decision, tuned_metrics


def test_val_tuned_threshold_on_a_constructed_example():
    # val: negatives score .05 .1 .2 .4, positives .3 .5. "minority iff p >= t" reaches the best
    # balanced accuracy (1 + 3/4) / 2 = .875 only for t in (.2, .3]: every resample's best
    # plateau lies between two val scores, and argmax at 0.5 would find half the positives.
    y_val = np.array([0, 0, 0, 0, 1, 1])
    p_min = np.array([0.05, 0.1, 0.2, 0.4, 0.3, 0.5])
    scores = np.stack([1 - p_min, p_min], axis=1)
    decision = tune_decision(y_val, scores, minority_index=1, train_priors=[0.9, 0.1])
    assert decision["val_balanced_accuracy"] == pytest.approx(0.875)
    assert 0.2 < decision["threshold"] <= 0.3
    test = np.stack([1 - np.array([0.25, 0.35, 0.1]), np.array([0.25, 0.35, 0.1])], axis=1)
    assert decide(test, decision).tolist() == [1, 1, 0]
    block = tuned_metrics(np.array([1, 1, 0]), test, ["benign", "malignant"], "malignant",
                          decision)
    assert block["minority_recall"] == 1.0 and block["accuracy"] == 1.0
    assert set(block) >= {"threshold", "accuracy", "balanced_accuracy", "minority_recall",
                          "per_class"}
    assert block["per_class"]["malignant"]["precision"] == 1.0


def test_more_classes_divide_by_the_training_priors():
    decision = tune_decision(np.array([0, 1, 2]), np.eye(3), 2, train_priors=[8, 1, 1])
    assert decision["threshold"] is None
    # 0.6 of class 0 against 0.2 of class 1: divided by priors .8 / .1 -> class 1 wins.
    assert decide(np.array([[0.6, 0.2, 0.2]]), decision).tolist() == [1]


def test_balanced_val_loss_weighs_classes_equally():
    from sklearn.metrics import log_loss
    from sklearn.utils.class_weight import compute_sample_weight

    y = np.array([0] * 9 + [1])
    probabilities = np.array([[0.9, 0.1]] * 9 + [[0.7, 0.3]])
    expected = log_loss(y, probabilities, sample_weight=compute_sample_weight("balanced", y))
    assert balanced_log_loss(y, probabilities) == pytest.approx(expected)
    assert validation_scores(y, probabilities)["val_auc"] == pytest.approx(1.0)


def test_prior_free_monitor_keeps_a_later_better_epoch():
    """On a 1:14 val split the plain loss is lowest at epoch 1, where the model says "benign" to
    everything (AUC 0.5); the AUC monitor and the balanced loss keep epoch 6, which ranks."""
    from sklearn.metrics import log_loss

    y = np.array([0] * 140 + [1] * 10)
    negatives = np.linspace(0.15, 0.25, 140)
    history = {"val_loss": [], "val_auc": [], "val_balanced_loss": []}
    # Epoch 1 answers the prior 1/15 to everything; then the positives separate from the
    # negatives until epoch 6 (shift 0 .. 0.1 above them), and sink back after it.
    shifts = [None, -0.05, -0.02, 0.0, 0.03, 0.1, 0.04, 0.0]
    for shift in shifts:
        if shift is None:
            p = np.full(150, 1 / 15)
        else:
            p = np.concatenate([negatives, np.linspace(0.15, 0.25, 10) + shift])
        probabilities = np.stack([1 - p, p], axis=1)
        history["val_loss"].append(log_loss(y, probabilities))
        for key, value in validation_scores(y, probabilities).items():
            history[key].append(value)
    assert best_epoch(history, "val_loss", 0) == 1
    assert best_epoch(history, "val_auc", 0) == 6
    assert best_epoch(history, "val_balanced_loss", 0) == 6

    # Keras' EarlyStopping built by early_stopping() restores the epoch best_epoch names.
    class Weights:
        def __init__(self):
            self.current, self.stop_training = None, False

        def get_weights(self):
            return self.current

        def set_weights(self, value):
            self.current = value

    model = Weights()
    stopper = early_stopping("val_auc", patience=2, min_epochs=3)
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, auc in enumerate(history["val_auc"]):
        model.current = epoch
        stopper.on_epoch_end(epoch, {"val_auc": auc})
        if model.stop_training:
            break
    stopper.on_train_end()
    assert model.current + 1 == best_epoch(history, "val_auc", 3)
    assert best_epoch({"val_auc": [0.9, 0.5, 0.6, 0.55]}, "val_auc", 2) == 3  # min epochs


def test_monitor_last_selects_nothing_and_keeps_the_last_epoch(capsys):
    """--monitor last: the plain way to train; no epoch is chosen on val, none restored, no stop."""
    from keras_ganaug.classify.cli import main
    from keras_ganaug.classify.config import ClassifierConfig, resolve
    from keras_ganaug.errors import UserError

    history = {"val_auc": [0.9, 0.5, 0.6, 0.55]}
    assert best_epoch(history, "last", 2) == 4
    stopper = early_stopping("last", patience=0, min_epochs=0)
    assert stopper.best_weights is None and (stopper.wait, stopper.best_epoch) == (0, 0)
    for epoch in range(4):  # a plain Callback: its hooks record nothing and stop nothing
        stopper.on_epoch_end(epoch, {"val_auc": history["val_auc"][epoch]})
    assert stopper.best_weights is None
    assert resolve(ClassifierConfig(monitor="last")).monitor == "last"
    with pytest.raises(UserError, match="--monitor best: expected one of val_auc, "
                                        "val_balanced_loss, val_loss, last$"):
        resolve(ClassifierConfig(monitor="best"))
    assert main(["--monitor", "best"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--monitor" in error and "'last'" in error

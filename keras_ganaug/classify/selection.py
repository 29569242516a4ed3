"""Model selection free of the class prior: what early stopping and the best checkpoint watch.

A validation split cut from an imbalanced training set has the training prior (1:14 to 1:29 on the
skin set at N = 50-100), so its plain loss is lowest for a model that says "majority" to
everything: early stopping on it keeps epoch 1. The default monitor here is the val ROC AUC
(macro one-vs-rest for more classes), which no constant answer improves; the class-balanced val
loss (every class weighing the same) is the other prior-free choice. The plain val loss stays
available for comparison. "last" selects nothing: every epoch trains and the last one is the model
(the plain way to train, for asking whether selection on a small val split hides an effect).
"""

from __future__ import annotations

import numpy as np

from keras_ganaug.errors import UserError

# --monitor value -> (the log key it reads, "max" or "min"; "last": reported, not selected on)
MONITORS = {"val_auc": ("val_auc", "max"), "val_balanced_loss": ("val_balanced_loss", "min"),
            "val_loss": ("val_loss", "min"), "last": ("val_auc", "last")}
DEFAULT_MONITOR = "val_auc"
DEFAULT_MIN_EPOCHS = 5  # a model judged after an epoch or two is still mostly its initialisation


def check_monitor(monitor: str) -> str:
    if monitor not in MONITORS:
        raise UserError(f"--monitor {monitor}: expected one of {', '.join(MONITORS)}")
    return monitor


def balanced_log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Cross-entropy with every present class weighing the same: the mean over classes of each
    class's mean loss."""
    y_true = np.asarray(y_true, np.int64)
    picked = np.clip(np.asarray(probabilities, np.float64)[np.arange(len(y_true)), y_true],
                     1e-7, 1.0)
    losses = -np.log(picked)
    return float(np.mean([losses[y_true == c].mean() for c in np.unique(y_true)]))


def validation_scores(y_val: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """{"val_auc", "val_balanced_loss"} of val-set class probabilities (AUC NaN if undefined)."""
    from keras_ganaug.metrics.classification import roc_auc

    auc = roc_auc(np.asarray(y_val), np.asarray(probabilities, np.float64))
    return {"val_auc": float("nan") if auc is None else auc,
            "val_balanced_loss": balanced_log_loss(y_val, probabilities)}


def make_validation_callback(val_dataset, y_val: np.ndarray):
    """A Keras callback that adds val_auc and val_balanced_loss to each epoch's logs.

    It must run before EarlyStopping, CSVLogger and the backup in the callback list, which then
    see the keys like any Keras metric.
    """
    import keras

    class ValidationScores(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            probabilities = self.model.predict(val_dataset, verbose=0)
            logs.update(validation_scores(y_val, probabilities))

    return ValidationScores()


def early_stopping(monitor: str, patience: int, min_epochs: int, verbose: int = 0):
    """EarlyStopping on `monitor` that restores the best weights and ignores epochs before
    `min_epochs` (a model judged after one epoch is still mostly its initialisation); for
    "last", a stand-in that never stops and never restores."""
    import keras

    key, mode = MONITORS[check_monitor(monitor)]
    if mode == "last":
        return _keep_last_epoch()
    return keras.callbacks.EarlyStopping(monitor=key, mode=mode, patience=patience,
                                         start_from_epoch=min_epochs, restore_best_weights=True,
                                         verbose=verbose)


def _keep_last_epoch():
    """--monitor last: no early stopping and no best weights, so the last epoch's model is the one
    evaluated (and saved as best.keras). It carries EarlyStopping's record, empty, which
    TrainingBackup saves and restores as it does a real EarlyStopping's."""
    import keras

    class KeepLastEpoch(keras.callbacks.Callback):
        best_weights = best = None
        wait = stopped_epoch = best_epoch = 0

    return KeepLastEpoch()


def best_epoch(history: dict[str, list[float]], monitor: str, min_epochs: int) -> int | None:
    """The 1-based epoch the monitor chose (the first best at or after `min_epochs`; for "last",
    the last epoch)."""
    key, mode = MONITORS[monitor]
    values = np.asarray(history.get(key, []), np.float64)
    if not len(values):
        return None
    if mode == "last":
        return len(values)
    eligible = np.arange(len(values)) >= min(min_epochs, len(values) - 1)
    scored = np.where(eligible & np.isfinite(values), values, -np.inf if mode == "max" else np.inf)
    return int(np.argmax(scored) if mode == "max" else np.argmin(scored)) + 1

"""The classifier's exact-resume callback: its whole training state after each epoch."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_ganaug.checkpoints import CheckpointStore, unsaved_variables


class TrainingBackup(keras.callbacks.Callback):
    """A classifier's whole training state after each epoch, for an exact --resume, and the best
    epoch's model at `best_model` (.keras).

    Like keras.callbacks.BackupAndRestore plus ModelCheckpoint(save_best_only=True), but the
    backup is committed atomically (checkpoints.CheckpointStore), carries the dropout streams,
    and carries EarlyStopping's record (EARLY_STOPPING_STATE and its best weights, whatever it
    monitors), so a resumed run stops, and restores the best weights, as an uninterrupted one
    would. List it after the EarlyStopping it follows.
    """

    # What EarlyStopping.on_train_begin resets: its record of the run so far (not its settings).
    EARLY_STOPPING_STATE = ("wait", "stopped_epoch", "best", "best_epoch")

    def __init__(self, folder: str | os.PathLike, early_stopping, best_model: str | os.PathLike):
        super().__init__()
        self.store = CheckpointStore(folder)
        self.best_model = Path(best_model)
        self.early_stopping = early_stopping
        self.restored: dict | None = None
        self.best_file: str | None = None  # the weights file holding early stopping's best weights
        self.saved_best = None  # the best_weights list that best_file holds
        self.stopped = False  # the restored run had been stopped: it trains no further epoch

    def on_epoch_end(self, epoch, logs=None):
        stopper = self.early_stopping
        if stopper.best_weights is not None and stopper.best_weights is not self.saved_best:
            # A new best: EarlyStopping just copied this epoch's weights.
            self.best_file = self.store.write_weights(self.model)
            self.saved_best = stopper.best_weights
            tmp = self.best_model.with_name(f".tmp-{os.getpid()}.keras")
            self.model.save(tmp)
            os.replace(tmp, self.best_model)
        record = {name: _plain(getattr(stopper, name)) for name in self.EARLY_STOPPING_STATE}
        # stop_training: early stopping (or another callback) ended the run with this epoch.
        self.store.save(self.model, {"epoch": epoch + 1, "early_stopping": record,
                                     "best_weights": self.best_file,
                                     "stop_training": bool(self.model.stop_training)},
                        unsaved_variables(self.model),
                        keep=(self.best_file,) if self.best_file else ())

    def restore(self, model) -> int:
        """Load the last backup into `model`; returns the epoch to resume from (0: no backup)."""
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # or its saved state is skipped
        state = self.store.load(model, unsaved_variables(model))
        if state is None:
            return 0
        best = None
        if state["best_weights"]:
            self.store.load_weights(model, state["best_weights"])
            best = model.get_weights()
            self.store.load_weights(model, state["weights"])
        self.best_file, self.saved_best = state["best_weights"], best
        self.stopped = state["stop_training"]
        self.restored = {**state["early_stopping"], "best_weights": best}
        return int(state["epoch"])

    def on_train_begin(self, logs=None):
        # Runs after EarlyStopping.on_train_begin, which resets its record.
        if self.restored is None:
            return
        for name, value in self.restored.items():
            setattr(self.early_stopping, name, value)


def _plain(value):
    """A JSON-able copy of an EarlyStopping record value (numpy scalars become Python numbers)."""
    return value if value is None or isinstance(value, (bool, int, float)) else float(value)

"""Callbacks of GAN training: sample grids, crash-safe checkpoints, snapshots, NaN guard, curves."""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_ganaug.checkpoints import CheckpointStore, unsaved_variables
from keras_ganaug.export import export_gan


def image_grid(images_uint8: np.ndarray, columns: int | None = None) -> np.ndarray:
    """[N, H, W, C] uint8 -> one [rows*H, cols*W, C] mosaic with 2 px gaps."""
    n, h, w, c = images_uint8.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + 2) - 2, columns * (w + 2) - 2, c), 255, np.uint8)
    for i, image in enumerate(images_uint8):
        r, col = divmod(i, columns)
        grid[r * (h + 2): r * (h + 2) + h, col * (w + 2): col * (w + 2) + w] = image
    return grid


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


class SampleGrid(keras.callbacks.Callback):
    """Every `every` epochs, a grid from the same fixed noise: progress is visible at a glance."""

    def __init__(self, folder: str | os.PathLike, every: int, count: int = 36, seed: int = 1234):
        super().__init__()
        self.folder, self.every, self.count, self.seed = Path(folder), every, count, seed

    def write(self, name: str) -> Path:
        from keras_ganaug.data import to_uint8

        images, _ = self.model.generate(self.count, self.seed, -1)
        path = self.folder / f"{name}.png"
        self.folder.mkdir(parents=True, exist_ok=True)
        save_png(image_grid(to_uint8(images).numpy()), path)
        return path

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.write(f"epoch_{epoch + 1:05d}")


class GANCheckpoint(keras.callbacks.Callback):
    """Everything that decides a GAN's next step, after each epoch and every `every` steps (0: at
    epoch ends only): both networks, both optimizers, EMA, ADA's p, the noise and augmentation
    streams, the global step and the epoch's running losses. The data order is a function of
    (seed, epoch) (gan_training.real_batches), so the step is all it takes to find the next batch.

    `restore` loads the last checkpoint into a compiled GAN and returns (epoch, step in epoch).
    """

    def __init__(self, folder: str | os.PathLike, steps_per_epoch: int, every: int = 0):
        super().__init__()
        self.store = CheckpointStore(folder)
        self.steps_per_epoch, self.every = steps_per_epoch, every
        self.running_losses: list | None = None  # restored mid-epoch sums, until fit resets them
        self.saved_step = 0  # global step of the last checkpoint

    @staticmethod
    def _carried(gan) -> list:
        # The loss trackers' sums matter only mid-epoch: the epoch's logged means include them.
        return unsaved_variables(gan) + [v for m in gan.metrics for v in m.variables]

    def _save(self, step: int, logs) -> None:
        if not all(math.isfinite(float(v)) for k, v in (logs or {}).items() if k.endswith("loss")):
            return  # a diverged step: the last good checkpoint must stay as it was
        epoch, step_in_epoch = divmod(step, self.steps_per_epoch)
        self.store.save(self.model, {"epoch": epoch, "step": step_in_epoch,
                                     "logs": {k: float(v) for k, v in (logs or {}).items()}},
                        self._carried(self.model))
        self.saved_step = step

    def on_train_batch_end(self, batch, logs=None):
        if not self.every:
            return
        step = int(self.model.g_steps.numpy())  # the global step, also across a resume
        # Crossing a multiple of `every` (steps_per_execution may jump over it); an epoch's last
        # step is left to on_epoch_end, which saves the epoch's final logs.
        if step // self.every > self.saved_step // self.every and step % self.steps_per_epoch:
            self._save(step, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._save(int(self.model.g_steps.numpy()), logs)

    def restore(self, gan) -> tuple[int, int]:
        """Load the last checkpoint into `gan`: (epoch, steps of it done); (0, 0) if none."""
        state = self.store.load(gan, self._carried(gan))
        if state is None:
            return 0, 0
        self.saved_step = int(state["epoch"]) * self.steps_per_epoch + int(state["step"])
        if state["step"]:
            self.running_losses = [keras.ops.convert_to_numpy(v)
                                   for m in gan.metrics for v in m.variables]
        return int(state["epoch"]), int(state["step"])

    def on_epoch_begin(self, epoch, logs=None):
        # fit() resets the trackers before each epoch; a resumed half epoch goes on from its sums.
        if self.running_losses is not None:
            variables = [v for m in self.model.metrics for v in m.variables]
            for variable, value in zip(variables, self.running_losses, strict=True):
                variable.assign(value)
            self.running_losses = None


class PeriodicExport(keras.callbacks.Callback):
    """A SavedModel snapshot every `every` epochs (the studies picked generators among these)."""

    def __init__(self, folder: str | os.PathLike, every: int, metadata: dict):
        super().__init__()
        self.folder, self.every, self.metadata = Path(folder), every, metadata

    def on_epoch_end(self, epoch, logs=None):
        if self.every and (epoch + 1) % self.every == 0:
            export_gan(self.model, self.folder / f"epoch_{epoch + 1:05d}",
                       {**self.metadata, "epochs_trained": epoch + 1})


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first non-finite loss; the checkpoint of the last good epoch stays as it was."""

    def __init__(self):
        super().__init__()
        self.bad: tuple[int, str] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if name.endswith("loss") and not math.isfinite(float(value)):
                self.bad = (self.epoch + 1, name)
                self.model.stop_training = True
                return


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


def trim_history(history_csv: str | os.PathLike, epochs: int) -> None:
    """Keep the first `epochs` rows of history.csv: a resumed run appends from its checkpoint.

    A run killed after logging an epoch but before checkpointing it (or stopped by a NaN) would
    otherwise leave rows that the resumed run logs again.
    """
    path = Path(history_csv)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < epochs]
    if kept != lines:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)


def plot_history(history_csv: str | os.PathLike, path: str | os.PathLike) -> None:
    """Loss curves of every logged column, one panel each, from history.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.read_csv(history_csv)
    # CSVLogger writes empty val_* columns when there is no validation data: leave them out.
    columns = [c for c in frame.columns if c != "epoch" and frame[c].notna().any()]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 2.8), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        ax.plot(frame["epoch"] + 1, frame[column])
        ax.set_title(column)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

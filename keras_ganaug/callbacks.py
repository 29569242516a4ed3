"""Callbacks of GAN training: sample grids, crash-safe checkpoints, snapshots, NaN guard, curves."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_ganaug.export import export_gan
from keras_ganaug.files import write_json_atomic

CHECKPOINT_WEIGHTS = "last.weights.h5"
CHECKPOINT_STATE = "last.json"


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
    """Weights of both networks, both optimizers, EMA and augmentation state, after each epoch.

    Written to a temporary file and renamed, so a kill mid-write leaves the previous checkpoint.
    `restore` loads it into a compiled GAN and returns the epoch to resume from.
    """

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        if not all(math.isfinite(float(v)) for k, v in (logs or {}).items() if k.endswith("loss")):
            return  # a diverged epoch: the last good checkpoint must stay as it was
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".tmp-{os.getpid()}.weights.h5"
        self.model.save_weights(tmp)
        os.replace(tmp, self.folder / CHECKPOINT_WEIGHTS)
        state = {"epoch": epoch + 1,
                 "seed_state": self.model.seed_generator.state.numpy().tolist(),
                 "logs": {k: float(v) for k, v in (logs or {}).items()}}
        write_json_atomic(self.folder / CHECKPOINT_STATE, state)

    @staticmethod
    def restore(gan, folder: str | os.PathLike) -> int:
        folder = Path(folder)
        state_path = folder / CHECKPOINT_STATE
        if not state_path.is_file():
            return 0
        state = json.loads(state_path.read_text())
        gan.load_weights(folder / CHECKPOINT_WEIGHTS)
        gan.seed_generator.state.assign(np.asarray(state["seed_state"], gan.seed_generator.state.dtype))
        return int(state["epoch"])


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
    """A classifier's weights, optimizer and early-stopping record after each epoch, for --resume,
    and the best epoch's model at `best_model` (.keras).

    Like keras.callbacks.BackupAndRestore plus ModelCheckpoint(save_best_only=True), but every file
    is written to a temporary sibling and renamed, and EarlyStopping's record of the best epoch is
    carried over, so a resumed run stops, and restores the best weights, as an uninterrupted one
    would. List it after the EarlyStopping it follows.
    """

    def __init__(self, folder: str | os.PathLike, early_stopping, best_model: str | os.PathLike):
        super().__init__()
        self.folder, self.best_model = Path(folder), Path(best_model)
        self.early_stopping = early_stopping
        self.restored: dict | None = None

    def _save_weights(self, name: str) -> None:
        tmp = self.folder / f".tmp-{os.getpid()}.weights.h5"
        self.model.save_weights(tmp)
        os.replace(tmp, self.folder / name)

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        stopper = self.early_stopping
        if stopper.best_epoch == epoch:
            self._save_weights("best.weights.h5")
            tmp = self.best_model.with_name(f".tmp-{os.getpid()}.keras")
            self.model.save(tmp)
            os.replace(tmp, self.best_model)
        self._save_weights(CHECKPOINT_WEIGHTS)
        best = None if stopper.best is None else float(stopper.best)
        write_json_atomic(self.folder / CHECKPOINT_STATE, {
            "epoch": epoch + 1, "wait": stopper.wait, "best": best,
            "best_epoch": stopper.best_epoch})

    def restore(self, model) -> int:
        """Load the last backup into `model`; returns the epoch to resume from (0: no backup)."""
        state_path = self.folder / CHECKPOINT_STATE
        if not state_path.is_file():
            return 0
        self.restored = json.loads(state_path.read_text())
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # or its saved state is skipped
        model.load_weights(self.folder / "best.weights.h5")
        self.restored["best_weights"] = model.get_weights()
        model.load_weights(self.folder / CHECKPOINT_WEIGHTS)
        return int(self.restored["epoch"])

    def on_train_begin(self, logs=None):
        # Runs after EarlyStopping.on_train_begin, which resets its record.
        if self.restored is None:
            return
        stopper, state = self.early_stopping, self.restored
        stopper.wait, stopper.best, stopper.best_epoch = state["wait"], state["best"], state["best_epoch"]
        stopper.best_weights = state["best_weights"]


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

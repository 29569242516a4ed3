"""Callbacks of GAN training: sample grids, crash-safe checkpoints, snapshots, NaN guard, curves."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_ganaug.export import export_gan, write_json_atomic

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

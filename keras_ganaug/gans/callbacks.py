"""Callbacks of GAN training: sample grids, crash-safe checkpoints, snapshots, NaN guard."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import keras

from keras_ganaug.checkpoints import CheckpointStore, unsaved_variables
from keras_ganaug.gans.export import export_gan
from keras_ganaug.plots import image_grid, save_png


class SampleGrid(keras.callbacks.Callback):
    """Every `every` epochs, a grid from the same fixed noise: progress is visible at a glance."""

    def __init__(self, folder: str | os.PathLike, every: int, count: int = 36, seed: int = 1234):
        super().__init__()
        self.folder, self.every, self.count, self.seed = Path(folder), every, count, seed

    def write(self, name: str) -> Path:
        from keras_ganaug.data.images import to_uint8

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
    (seed, epoch) (gans/training.real_batches), so the step is all it takes to find the next batch.

    `restore` loads the last checkpoint into a compiled GAN and returns (epoch, step in epoch).
    """

    def __init__(self, folder: str | os.PathLike, steps_per_epoch: int, every: int = 0,
                 min_seconds: float = 0.0, last_step: int | None = None,
                 clock=time.monotonic):
        super().__init__()
        self.store = CheckpointStore(folder)
        self.steps_per_epoch, self.every = steps_per_epoch, every
        # Without `every`, epoch ends are checkpointed at most once per `min_seconds`, and always
        # at `last_step`: with --kimg an epoch of 10 images is one step, and writing every
        # network and optimizer (94 MB at 64 px) after each 0.3 s step doubled a run's time. A
        # crash then costs at most `min_seconds` of training; resume is exact from any step.
        self.min_seconds, self.last_step, self.clock = min_seconds, last_step, clock
        self.saved_at = clock()
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
        self.saved_step, self.saved_at = step, self.clock()

    def on_train_batch_end(self, batch, logs=None):
        if not self.every:
            return
        step = int(self.model.g_steps.numpy())  # the global step, also across a resume
        # Crossing a multiple of `every` (steps_per_execution may jump over it); an epoch's last
        # step is left to on_epoch_end, which saves the epoch's final logs.
        if step // self.every > self.saved_step // self.every and step % self.steps_per_epoch:
            self._save(step, logs)

    def save_if_behind(self) -> None:
        """Checkpoint the steps done since the last checkpoint (a Ctrl-C: without it a run
        stopped in its first minute had nothing to resume from). A step is whole once its
        train function returned, which is when Python sees the interrupt."""
        step = int(self.model.g_steps.numpy())
        if step > self.saved_step:
            # The epoch's running loss means, as fit logs them: a non-finite one (the step
            # interrupted may have diverged unseen) keeps the last good checkpoint.
            self._save(step, {m.name: float(m.result()) for m in self.model.metrics})

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.g_steps.numpy())
        if (self.every or step == self.last_step
                or self.clock() - self.saved_at >= self.min_seconds):
            self._save(step, logs)

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

"""Crash-safe checkpoints of a model's whole training state, so --resume continues the exact run.

A checkpoint is a weights file (Keras' save_weights: networks and optimizers) plus the variables
save_weights leaves out (random-stream states, running metric sums) and the caller's record
(epoch, step, early stopping), all committed by one atomic replace of last.json, which names the
weights files it uses. A kill at any moment leaves the last committed checkpoint whole: files are
written under new names first, and only files no commit refers to are ever deleted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_ganaug.errors import UserError
from keras_ganaug.io import write_json_atomic

STATE_FILE = "last.json"
WEIGHTS_SUFFIX = ".weights.h5"  # save_weights insists on it


def unsaved_variables(model: keras.Model) -> list:
    """The model's variables that save_weights skips: the states of its SeedGenerators (noise,
    dropout, augmentation), without which a resumed run would draw other random numbers."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


class CheckpointStore:
    """One folder of checkpoints; `save` commits a new one, `load` restores the last committed."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def write_weights(self, model: keras.Model) -> str:
        """model.save_weights into a new file of the folder, not yet referenced; returns its name."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"weights-{time.time_ns()}{WEIGHTS_SUFFIX}"
        tmp = self.folder / f".tmp-{name}"
        model.save_weights(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        return name

    def save(self, model: keras.Model, state: dict, variables: list,
             keep: tuple[str, ...] = ()) -> None:
        """Commit `state` with the model's weights and `variables`' values; `keep` names other
        weights files the state refers to (the best epoch's), which cleanup must spare."""
        weights = self.write_weights(model)
        values = [keras.ops.convert_to_numpy(v).tolist() for v in variables]
        write_json_atomic(self.folder / STATE_FILE,
                          {**state, "weights": weights, "variables": values})
        referenced = {weights, *keep}
        for path in self.folder.iterdir():
            if path.name.startswith(".tmp-") or (path.name.endswith(WEIGHTS_SUFFIX)
                                                 and path.name not in referenced):
                path.unlink(missing_ok=True)

    def has_commit(self) -> bool:
        """Whether a checkpoint was committed: what `load` would restore."""
        return (self.folder / STATE_FILE).is_file()

    def load(self, model: keras.Model, variables: list) -> dict | None:
        """Load the last commit into `model` and `variables`; its state, or None if there is none."""
        path = self.folder / STATE_FILE
        if not self.has_commit():
            return None
        state = json.loads(path.read_text())
        if "variables" not in state:
            raise UserError(f"--resume: {self.folder} was written by an older keras-ganaug that "
                            f"did not record the random streams; it cannot be continued exactly "
                            f"(pass --overwrite to start the run again)")
        if len(state["variables"]) != len(variables):
            raise UserError(f"--resume: {self.folder} holds {len(state['variables'])} random and "
                            f"metric states but this model has {len(variables)}; not a checkpoint "
                            f"of this run")
        self.load_weights(model, state["weights"])
        for variable, value in zip(variables, state["variables"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        return state

    def load_weights(self, model: keras.Model, name: str) -> None:
        model.load_weights(self.folder / name)

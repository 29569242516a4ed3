"""The classifier stage: which models exist, their graphs, classic augmentation, the splits with
synthetic or oversampled extras, model selection, training and its CLI."""

from __future__ import annotations

import os
from pathlib import Path


def load_classifier(run: str | os.PathLike):
    """The best model of a train_classifier.py run (RUN/best.keras, the one its metrics.json
    scored): [-1, 1] images [B, S, S, C] -> class probabilities. Every layer is built-in Keras,
    so keras.saving.load_model(RUN / "best.keras") loads it just as well, in any process."""
    import keras

    from keras_ganaug.errors import UserError

    path = Path(run) / "best.keras"
    if not path.is_file():
        raise UserError(f"{path}: missing; expected the folder of a finished train_classifier.py "
                        f"run")
    return keras.saving.load_model(path)

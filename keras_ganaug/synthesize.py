"""Exported generator -> N synthetic images of a class, as arrays or PNG files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_ganaug.errors import UserError
from keras_ganaug.export import generator_dir, load_metadata


def synthesize(generator_path: str | os.PathLike, count: int, seed: int, class_id: int = -1,
               batch_size: int = 64) -> np.ndarray:
    """uint8 [count, H, W, C] from a generator SavedModel; batch b uses seed `seed + b`.

    Batching bounds memory for large counts; the result depends only on (count, seed, class_id,
    batch_size), so a synthetic set can be regenerated exactly.
    """
    if count < 0:
        raise UserError(f"count {count}: expected 0 or more images")
    metadata = load_metadata(generator_path)
    num_classes = int(metadata.get("num_classes", 1))
    if class_id >= num_classes:
        raise UserError(f"class_id {class_id}: the generator knows classes 0..{num_classes - 1}")
    if not metadata.get("conditional") and class_id not in (-1, metadata.get("trained_class_id")):
        raise UserError(f"class_id {class_id}: this generator was trained on class "
                        f"{metadata.get('trained_class')!r} only (id "
                        f"{metadata.get('trained_class_id')}); use -1 or that id")
    model = tf.saved_model.load(str(generator_dir(generator_path)))
    size, channels = int(metadata["image_size"]), int(metadata["channels"])
    chunks = []
    for batch, start in enumerate(range(0, count, batch_size)):
        n = min(batch_size, count - start)
        out = model.generate(count=tf.constant(n, tf.int32), seed=tf.constant(seed + batch, tf.int64),
                             class_id=tf.constant(class_id, tf.int32))
        chunks.append(out["images"].numpy())
    if not chunks:
        return np.zeros((0, size, size, channels), np.uint8)
    return np.concatenate(chunks)


def write_pngs(images: np.ndarray, folder: str | os.PathLike, prefix: str = "synthetic") -> list[Path]:
    """Write uint8 [N, H, W, C] images as PNG files `prefix_00000.png`...; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}_{i:05d}.png"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        paths.append(path)
    return paths

"""Exported generator -> N synthetic uint8 images of a class; vetting by the discriminator, resizing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_ganaug.errors import UserError
from keras_ganaug.gans.export import generator_dir, load_metadata

SCORE_BATCH = 64  # images per discriminator call when vetting


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


def vet_images(generator_path: str, images: np.ndarray, class_ids: np.ndarray,
               keep: int) -> tuple[np.ndarray, dict]:
    """Keep the `keep` images the exported discriminator scores most real (ties: earliest first)."""
    run_dir = Path(generator_path)
    if run_dir.name == "generator" and not (run_dir / "discriminator").is_dir():
        run_dir = run_dir.parent
    if not (run_dir / "discriminator" / "saved_model.pb").is_file():
        raise UserError(f"--vet: no discriminator SavedModel at {run_dir / 'discriminator'} "
                        f"(train_gan.py writes it beside the generator)")
    scorer = tf.saved_model.load(str(run_dir / "discriminator"))
    realness = np.concatenate([
        scorer.score(images=tf.constant(images[i:i + SCORE_BATCH]),
                     class_ids=tf.constant(class_ids[i:i + SCORE_BATCH], tf.int32)
                     )["realness"].numpy()
        for i in range(0, len(images), SCORE_BATCH)])
    order = np.argsort(-realness, kind="stable")[:keep]
    kept = np.sort(order)
    report = {"generated": int(len(images)), "kept": int(keep),
              "mean_realness_all": float(realness.mean()),
              "mean_realness_kept": float(realness[kept].mean()) if keep else None}
    return images[kept], report


def resize_images(images: np.ndarray, size: int, upscale: str) -> tuple[np.ndarray, str]:
    """uint8 [N, h, h, C] -> uint8 [N, size, size, C] and the method used, for the metrics.

    Smaller images are upscaled bicubically or by a super-resolution SavedModel (`upscale` = its
    folder; called on float32 [N, h, w, 3] in [0, 255], as TF-Hub's ESRGAN is), then bicubically to
    the exact size if the model's factor overshoots. Larger images are downscaled with antialiasing.
    """
    current = images.shape[1]
    if current == size or len(images) == 0:
        return images, "none"
    method = "bicubic"
    floats = tf.cast(images, tf.float32)
    if current > size:
        method = "downscale-bicubic-antialias"
        floats = tf.image.resize(floats, (size, size), method="bicubic", antialias=True)
    elif upscale != "bicubic":
        floats = _super_resolve(floats, upscale)
        method = f"savedmodel:{upscale}"
        if floats.shape[1] != size:
            floats = tf.image.resize(floats, (size, size), method="bicubic",
                                     antialias=floats.shape[1] > size)
            method += f"+bicubic-to-{size}"
    else:
        floats = tf.image.resize(floats, (size, size), method="bicubic")
    return tf.cast(tf.round(tf.clip_by_value(floats, 0.0, 255.0)), tf.uint8).numpy(), method


def _super_resolve(images, model_path: str):
    """Run a super-resolution SavedModel over float32 [N, h, w, C] in [0, 255], a few at a time."""
    try:
        model = tf.saved_model.load(model_path)
    except (OSError, ValueError) as err:
        raise UserError(f"--upscale {model_path}: not a loadable SavedModel "
                        f"({str(err).splitlines()[0]})") from err
    if not callable(model):
        signatures = getattr(model, "signatures", {})
        if "serving_default" not in signatures:
            raise UserError(f"--upscale {model_path}: the SavedModel is neither callable nor has "
                            f"a serving_default signature")
        signature = signatures["serving_default"]

        def model(x):
            return next(iter(signature(x).values()))

    grey = images.shape[-1] == 1
    chunks = []
    for start in range(0, images.shape[0], 8):
        batch = images[start:start + 8]
        if grey:
            batch = tf.repeat(batch, 3, axis=-1)
        out = tf.cast(model(batch), tf.float32)
        chunks.append(tf.reduce_mean(out, axis=-1, keepdims=True) if grey else out)
    return tf.concat(chunks, axis=0)

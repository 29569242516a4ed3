"""Classifier-side augmentation, applied on the fly to the training split only.

classic     Keras preprocessing layers: flips, rotations up to 45 degrees, zoom, translation,
            contrast. They run batched inside the tf.data pipeline on [-1, 1] float images.
superpixel  scikit-image SLIC segments, each replaced by its mean colour with probability p: what
            imgaug's ``Superpixels(p_replace, n_segments)`` did (imgaug is unmaintained and breaks on
            numpy 2). SLIC is numpy code, so it runs per uint8 image through ``tf.numpy_function``
            in the tf.data map, each image with a numpy generator seeded by (seed, epoch,
            position), so a run, resumed or not, draws the same. Cost: about 4 ms per 64 px image
            and 0.1 s per 224 px image on one CPU core (it holds the GIL), every epoch.

The GANs' differentiable augmentation (DiffAugment) lives in keras_ganaug/gans/augment.py.
"""

from __future__ import annotations

import numpy as np

from keras_ganaug.errors import UserError

AUGMENTS = ("classic", "superpixel")  # the kinds; --augment takes none, one, or both
AUGMENT_MODES = ("none", *AUGMENTS, "+".join(AUGMENTS))
MAX_ROTATION_DEGREES = 45.0


def parse_augment(mode: str) -> tuple[bool, bool]:
    """--augment value -> (classic, superpixel)."""
    if mode not in AUGMENT_MODES:
        raise UserError(f"--augment {mode}: expected one of {', '.join(AUGMENT_MODES)}")
    return "classic" in mode, "superpixel" in mode


def classic_augmentation(seed: int):
    """The classic geometric + contrast augmentation as a Keras model on [-1, 1] float images."""
    import keras
    from keras import layers

    return keras.Sequential([
        layers.RandomFlip("horizontal_and_vertical", seed=seed),
        layers.RandomRotation(MAX_ROTATION_DEGREES / 360.0, fill_mode="reflect", seed=seed + 1),
        layers.RandomZoom(0.15, fill_mode="reflect", seed=seed + 2),
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
        # value_range must match the images, or the layer clips [-1, 1] images to [0, 255].
        layers.RandomContrast(0.2, value_range=(-1.0, 1.0), seed=seed + 4),
    ], name="classic_augmentation")


def slic_segments(image: np.ndarray, n_segments: int) -> np.ndarray:
    """SLIC segment ids [H, W] of one uint8 [H, W, C] image (C = 1 or 3)."""
    from skimage.segmentation import slic

    if image.shape[-1] == 1:
        return slic(image[..., 0], n_segments=n_segments, channel_axis=None, start_label=0)
    return slic(image, n_segments=n_segments, start_label=0)


def superpixels(image: np.ndarray, p: float, n_segments: int,
                rng: np.random.Generator) -> np.ndarray:
    """Replace each SLIC segment of a uint8 [H, W, C] image by its mean colour with probability p."""
    segments = slic_segments(image, n_segments)
    n_found = int(segments.max()) + 1
    replace = rng.random(n_found) < p
    if not replace.any():
        return image
    flat = segments.ravel()
    sizes = np.bincount(flat, minlength=n_found).astype(np.float64)
    out = image.reshape(-1, image.shape[-1]).copy()
    for c in range(image.shape[-1]):
        means = np.bincount(flat, weights=out[:, c], minlength=n_found) / np.maximum(sizes, 1)
        chosen = replace[flat]
        out[chosen, c] = np.round(means[flat[chosen]]).astype(np.uint8)
    return out.reshape(image.shape)


def superpixel_map(p: float, n_segments: int, seed: int):
    """A tf.data map function (image uint8 [H,W,C], label, epoch, position) -> (image, label),
    with superpixels applied; each image's draws are a pure function of (seed, epoch, position)."""
    import tensorflow as tf

    def apply(image, epoch, position):
        return superpixels(image, p, n_segments, np.random.default_rng([seed, epoch, position]))

    def map_fn(image, label, epoch, position):
        out = tf.numpy_function(apply, [image, epoch, position], tf.uint8, stateful=False)
        out.set_shape(image.shape)
        return out, label

    return map_fn


def reseed(layer, key) -> None:
    """Set every random stream of `layer` (its SeedGenerator states) from the [2] int64 `key`:
    what it draws next is then a pure function of the key, whatever it drew before."""
    import tensorflow as tf

    for index, state in enumerate(layer.variables):
        state.assign(tf.cast(tf.random.experimental.stateless_fold_in(key, index), state.dtype))

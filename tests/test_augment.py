"""Classic and superpixel augmentation: value ranges kept, superpixels piecewise constant."""

from __future__ import annotations

import numpy as np
import pytest

from keras_ganaug.classify.augment import (
    classic_augmentation,
    parse_augment,
    slic_segments,
    superpixel_map,
    superpixels,
)
from keras_ganaug.errors import UserError


def _image(channels: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 8, yy * 8, (xx + yy) * 4], axis=-1)[..., :channels]
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_superpixels_with_p1_are_piecewise_constant_on_slic_segments(channels):
    image = _image(channels)
    out = superpixels(image, p=1.0, n_segments=16, rng=np.random.default_rng(0))
    segments = slic_segments(image, 16)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert len(np.unique(segments)) > 4
    for segment in np.unique(segments):
        pixels = out[segments == segment]
        assert (pixels == pixels[0]).all()
        mean = image[segments == segment].reshape(-1, channels).mean(axis=0)
        np.testing.assert_allclose(pixels[0], np.round(mean), atol=0.5)


def test_superpixels_replace_about_p_of_the_segments():
    image = _image()
    segments = slic_segments(image, 64)
    out = superpixels(image, p=0.5, n_segments=64, rng=np.random.default_rng(1))
    changed = [not (out[segments == s] == image[segments == s]).all()
               for s in np.unique(segments)]
    assert 0.2 < np.mean(changed) < 0.8
    assert (superpixels(image, 0.0, 64, np.random.default_rng(1)) == image).all()


def test_superpixel_map_in_tf_data_is_seeded():
    import tensorflow as tf

    images = np.stack([_image(seed=s) for s in range(4)])

    def run(seed):
        ds = tf.data.Dataset.from_tensor_slices((images, np.arange(4), np.zeros(4, np.int64),
                                                 np.arange(4, dtype=np.int64)))
        ds = ds.map(superpixel_map(0.5, 32, seed))
        return np.stack([x.numpy() for x, _ in ds])

    first = run(3)
    assert first.shape == images.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, run(3))
    assert not (first == images).all()


def test_classic_augmentation_keeps_range_and_changes_images():
    import tensorflow as tf

    batch = tf.constant(np.stack([_image(seed=s) for s in range(8)]), tf.float32) / 127.5 - 1.0
    out = classic_augmentation(seed=0)(batch, training=True).numpy()
    assert out.shape == batch.shape
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5
    assert np.abs(out - batch.numpy()).mean() > 0.01
    # Inference leaves images alone: augmentation is for training only.
    np.testing.assert_array_equal(classic_augmentation(seed=0)(batch, training=False), batch)


def test_parse_augment():
    assert parse_augment("none") == (False, False)
    assert parse_augment("classic+superpixel") == (True, True)
    with pytest.raises(UserError, match="--augment"):
        parse_augment("mixup")

"""Shared helpers of the classifier tests: tiny image folders and hand-made generator exports.

The generator export follows keras_ganaug.gans.export's contract (generate / metadata signatures,
metadata.json beside it, a discriminator with score) without training a GAN, so the classifier's
synthetic path is tested in seconds and with images whose content the test controls.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: Path, counts: dict[str, dict[str, int]], size: int = 32,
                       seed: int = 0) -> Path:
    """ROOT/{split}/{class}/*.png: benign images dark, malignant bright, plus noise."""
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for class_index, (name, n) in enumerate(sorted(per_class.items())):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                base = 60 + 120 * class_index
                image = np.clip(rng.normal(base, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{name}_{i:03d}.png")
    return root


def write_fake_generator(out: Path, *, image_size: int = 32, channels: int = 3,
                         trained_class: str | None = "malignant",
                         class_names: tuple[str, ...] = ("benign", "malignant"),
                         fill: int | None = None, trained_on: tuple[str, ...] = ()) -> Path:
    """A generator export at OUT (generator/, discriminator/, metadata.json).

    Images are uniform noise from a stateless seed, or a constant `fill`. The discriminator's
    realness is the mean pixel value: vetting keeps the brightest fakes, which a test can check.
    `trained_on`: files whose hashes the metadata lists as the GAN's training images.
    """
    import hashlib

    import tensorflow as tf

    conditional = trained_class is None
    metadata = {"gan_type": "fake", "image_size": image_size, "channels": channels,
                "latent_size": 4, "class_names": list(class_names),
                "trained_class": trained_class, "conditional": conditional,
                "trained_class_id": None if conditional else class_names.index(trained_class),
                "num_classes": len(class_names), "n_real": 5, "seed": 0,
                "training_files_sha256": [hashlib.sha256(Path(f).read_bytes()).hexdigest()
                                          for f in trained_on]}
    shape = (image_size, image_size, channels)

    class Generator(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int64),
                                      tf.TensorSpec((), tf.int32)])
        def generate(self, count, seed, class_id):
            noise = tf.random.stateless_uniform((count, *shape), seed=tf.stack([seed, 7]),
                                                minval=0, maxval=256, dtype=tf.int32)
            images = noise if fill is None else tf.fill(tf.shape(noise), fill)
            ids = tf.fill((count,), tf.maximum(class_id, 0))
            return {"images": tf.cast(images, tf.uint8), "class_ids": ids}

        @tf.function(input_signature=[])
        def metadata(self):
            return tf.constant(json.dumps(metadata))

    class Discriminator(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.uint8),
                                      tf.TensorSpec((None,), tf.int32)])
        def score(self, images, class_ids):
            return {"realness": tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])}

    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(Generator(), str(out / "generator"))
    tf.saved_model.save(Discriminator(), str(out / "discriminator"))
    (out / "metadata.json").write_text(json.dumps(metadata))
    return out

"""A feature space for GAN quality that sees within-class diversity: a small SimCLR encoder.

Why self-supervised, not a classifier: a classifier's objective pulls the images of one class
together (its penultimate features all but collapse per class), so a generator that draws one lesion
type over and over scores as well there as one that draws them all. SimCLR (Chen et al. 2020) asks
the opposite: each image must be told apart from every other image of the batch, whatever its
class, while two augmented views of it stay close. Its features keep what makes two malignant
lesions different and ignore only what the augmentations change (flips, 90-degree turns, small
shifts, mild colour changes, cutout: the package's ADA ops), so a copier that mirrors its training
images is still a copier here.

Why several layers: each convolutional block's globally pooled activations are concatenated, so
colour and texture statistics (where a GAN's checkerboard lives) count beside the shape the last
block sees, and a few minutes of training suffice for useful features.

It is trained on ALL real TRAINING images of all classes (no labels used), never on test images:
about a minute for 2,600 images at 64 px on 2 CPU cores. It is saved as a plain functional
.keras file (standard layers only), so a study trains it once and every generator is measured in
the same space.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_ganaug.errors import UserError

FEATURE_WIDTHS = (16, 32, 64, 128)  # filters per block; each block halves the resolution
TINY_WIDTHS = (8, 16)  # for tests
FEATURE_EPOCHS = 6
FEATURE_BATCH = 128
PROJECTION_DIM = 64
TEMPERATURE = 0.2
LEARNING_RATE = 2e-3
# Each ADA op fires on a view with this probability: strong enough that two views differ, mild
# enough that colour is not wholly augmented away (colour tells lesions and fakes apart).
VIEW_AUGMENT_P = 0.5


def build_encoder(image_size: int, channels: int, widths: tuple[int, ...] = FEATURE_WIDTHS):
    """[-1, 1] images [B, S, S, C] -> concatenated global-average-pooled outputs of every block."""
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, channels))
    x, pooled = inputs, []
    for width in widths:
        x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
        # Momentum 0.9: the moving statistics must settle within the few hundred steps given.
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        pooled.append(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Concatenate()(pooled), name="simclr_encoder")


def nt_xent(projections, temperature: float = TEMPERATURE):
    """SimCLR's loss: rows i and i + B of [2B, D] are two views of one image, all others negatives."""
    import tensorflow as tf

    z = tf.math.l2_normalize(tf.cast(projections, tf.float32), axis=1)
    n = tf.shape(z)[0]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits -= tf.eye(n) * 1e9  # an image is not its own positive
    partners = tf.math.floormod(tf.range(n) + n // 2, n)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(partners, logits))


def train_feature_space(images_uint8: np.ndarray, seed: int = 0, epochs: int = FEATURE_EPOCHS,
                        widths: tuple[int, ...] = FEATURE_WIDTHS,
                        batch_size: int = FEATURE_BATCH) -> tuple[object, list[float]]:
    """Train the SimCLR encoder on uint8 [N, S, S, C] real training images -> (encoder, epoch losses).

    Seeded: initialisation, batch order and every augmentation draw follow `seed`.
    """
    import keras
    import tensorflow as tf

    from keras_ganaug.data.images import to_float
    from keras_ganaug.gans.augment import ada_augment

    images_uint8 = np.asarray(images_uint8)
    if images_uint8.ndim != 4 or images_uint8.shape[1] != images_uint8.shape[2]:
        raise UserError(f"feature space: expected square images [N, S, S, C], got "
                        f"{images_uint8.shape}")
    batch_size = min(batch_size, len(images_uint8))
    if batch_size < 2:
        raise UserError(f"feature space: needs at least 2 training images, got {len(images_uint8)}")
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(images_uint8.shape[1], images_uint8.shape[3], widths)
    head = keras.Sequential([keras.layers.Dense(2 * PROJECTION_DIM, activation="relu"),
                             keras.layers.Dense(PROJECTION_DIM)], name="projection")
    head.build(encoder.output_shape)
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    variables = encoder.trainable_variables + head.trainable_variables

    @tf.function
    def step(batch, step_seed):
        first, second = tf.unstack(tf.random.experimental.stateless_split(step_seed, 2))
        images = to_float(batch)
        views = tf.concat([ada_augment(images, VIEW_AUGMENT_P, first),
                           ada_augment(images, VIEW_AUGMENT_P, second)], axis=0)
        with tf.GradientTape() as tape:
            loss = nt_xent(head(encoder(views, training=True), training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(len(images_uint8))
        # Full batches only: a last batch of 3 would be a far easier contrastive task.
        batches = [order[i:i + batch_size]
                   for i in range(0, len(order) - batch_size + 1, batch_size)]
        epoch_losses = [float(step(tf.constant(images_uint8[idx]),
                                   tf.constant([seed, epoch * len(batches) + b], tf.int64)))
                        for b, idx in enumerate(batches)]
        losses.append(float(np.mean(epoch_losses)))
    return encoder, losses


def save_feature_space(encoder, path: str | os.PathLike) -> Path:
    """Write the encoder as a .keras file (through a temporary sibling, so never half written)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"--features {path}: expected a .keras file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        encoder.save(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"--features {path}: could not write ({err.strerror or err})") from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def weights_digest(model) -> str:
    """The first 16 hex digits of the sha256 of a model's weights (shapes and values, in order).

    Names a feature space: the encoder's training is seeded, but oneDNN's threaded reductions
    round differently from run to run, so two trainings of "the same" encoder are different
    spaces, and KID or precision / recall from two of them are not comparable. (The .keras file's
    own hash would not do: the file records when it was saved.)
    """
    import hashlib

    digest = hashlib.sha256()
    for weights in model.get_weights():
        weights = np.ascontiguousarray(weights)
        digest.update(str((weights.dtype.str, weights.shape)).encode())
        digest.update(weights.tobytes())
    return digest.hexdigest()[:16]


def load_feature_space(path: str | os.PathLike):
    """A feature encoder saved by save_feature_space (any Keras model mapping images to [B, D])."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--features {path}: no such file")
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"--features {path}: not a saved Keras model "
                        f"({str(err).splitlines()[0]})") from err

"""Differentiable augmentation that lets a GAN discriminator learn from 10-500 images.

Two schemes, both applied to real *and* fake images in the discriminator and generator steps, so
the generator is never pushed to reproduce the augmentations:

- DiffAugment (Zhao et al. 2020): every image gets random color, translation and cutout.
- ADA (Karras et al. 2020), simplified to x-flip, 90-degree rotations, integer translation, color
  and cutout: each op is applied per image with probability p, and p follows the sign of D's output
  on reals (above `target` means D is overfitting, so p rises). With p below about 0.8 the
  augmentations do not leak into the generated images.

Images are NHWC in [-1, 1] with any channel count; the output keeps the input's dtype (bfloat16
under mixed precision). All randomness is drawn with stateless TensorFlow ops from a seed pair that
comes from a `keras.random.SeedGenerator`, an int or a `[2]` seed tensor, so a run is reproducible
(on one device and compile mode), runs inside `tf.function`, XLA-compiled steps and `tf.distribute`
(each replica folds in its replica id).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The op names and the policy parser live in the TensorFlow-free registry (the CLI checks a
# policy before TensorFlow loads); re-exported here beside the ops they name.
from keras_ganaug.gans.registry import (  # noqa: F401
    DIFFAUGMENT_OPS,
    DIFFAUGMENT_POLICY,
    parse_policy,
)

# Mixed into every seed pair so augmentation draws differ from draws a model makes with the same
# seed (the GAN seeds its noise SeedGenerator with the same integer).
_AUGMENT_SALT = 0x41554721

SeedLike = keras.random.SeedGenerator | int | tf.Tensor | None


# ---- seeds --------------------------------------------------------------------------------------
def seed_pair(seed: SeedLike) -> tf.Tensor:
    """A `[2]` seed tensor for stateless ops from a SeedGenerator (advanced), int, tensor or None."""
    if isinstance(seed, keras.random.SeedGenerator):
        pair = seed.next()
    elif seed is None:
        # Keras' global seed generator, so keras.utils.set_random_seed makes this reproducible.
        pair = keras.random.randint((2,), 0, 2**31 - 1, seed=None)
    elif isinstance(seed, int):
        pair = tf.constant([seed, 0], tf.int64)
    else:
        pair = seed
    pair = tf.random.experimental.stateless_fold_in(tf.cast(pair, tf.int64), _AUGMENT_SALT)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        # Same seed state on every replica; without this all replicas would draw the same ops.
        pair = tf.random.experimental.stateless_fold_in(pair, context.replica_id_in_sync_group)
    return pair


def _split(pair: tf.Tensor, count: int) -> list[tf.Tensor]:
    """`count` independent seed pairs from one."""
    return tf.unstack(tf.random.experimental.stateless_split(pair, num=count))


def _uniform(seed: tf.Tensor, batch: tf.Tensor, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform([batch], seed, minval=low, maxval=high)


def _integers(seed: tf.Tensor, batch: tf.Tensor, low: int, high: int) -> tf.Tensor:
    """Per-image integers in [low, high] inclusive."""
    return tf.random.stateless_uniform([batch], seed, minval=low, maxval=high + 1, dtype=tf.int32)


def _per_image(values: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """[B] -> [B, 1, 1, 1] in the images' dtype, for broadcasting."""
    return tf.cast(tf.reshape(values, [-1, 1, 1, 1]), images.dtype)


# ---- deterministic kernels (per-image parameters) ----------------------------------------------
def adjust_brightness(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """Add `delta[b]` to every pixel of image b."""
    return images + _per_image(delta, images)


def adjust_saturation(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Scale each pixel's distance from its channel mean by `factor[b]` (no-op on 1 channel)."""
    mean = tf.reduce_mean(images, axis=3, keepdims=True)
    # Written as a change from the input so factor 1 returns it bit for bit (ADA with p=0).
    return images + (images - mean) * (_per_image(factor, images) - 1)


def adjust_contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Scale each image's distance from its own mean by `factor[b]`."""
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return images + (images - mean) * (_per_image(factor, images) - 1)


def _source_indices(size: int, shift: tf.Tensor, padding: str) -> tuple[tf.Tensor, tf.Tensor]:
    """For each image and output position, the input position it reads and whether it is inside."""
    source = tf.range(size)[None, :] - tf.cast(shift, tf.int32)[:, None]
    inside = (source >= 0) & (source < size)
    if padding == "reflect" and size > 1:
        period = 2 * (size - 1)
        folded = tf.math.floormod(source, period)
        return tf.where(folded >= size, period - folded, folded), tf.ones_like(inside)
    return tf.clip_by_value(source, 0, size - 1), inside


def translate(images: tf.Tensor, shift_y: tf.Tensor, shift_x: tf.Tensor,
              padding: str = "zeros") -> tf.Tensor:
    """Move image b down by `shift_y[b]` and right by `shift_x[b]` whole pixels.

    A gather, so gradients reach every input pixel that lands in the output. Uncovered pixels are
    0 (mid-gray in [-1, 1], as DiffAugment) or mirrored from the border with padding="reflect".
    """
    if padding not in ("zeros", "reflect"):
        raise ValueError(f"padding must be 'zeros' or 'reflect', got {padding!r}")
    height, width = images.shape[1], images.shape[2]
    rows, rows_inside = _source_indices(height, shift_y, padding)
    cols, cols_inside = _source_indices(width, shift_x, padding)
    moved = tf.gather(images, rows, axis=1, batch_dims=1)
    moved = tf.gather(moved, cols, axis=2, batch_dims=1)
    inside = rows_inside[:, :, None, None] & cols_inside[:, None, :, None]
    return moved * tf.cast(inside, images.dtype)


def cutout(images: tf.Tensor, center_y: tf.Tensor, center_x: tf.Tensor, size: int) -> tf.Tensor:
    """Zero a `size` x `size` square centred on (center_y[b], center_x[b]), clipped at the border."""
    height, width = images.shape[1], images.shape[2]
    top = tf.cast(center_y, tf.int32)[:, None] - size // 2
    left = tf.cast(center_x, tf.int32)[:, None] - size // 2
    rows, cols = tf.range(height)[None, :], tf.range(width)[None, :]
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    keep = ~(in_rows[:, :, None, None] & in_cols[:, None, :, None])
    return images * tf.cast(keep, images.dtype)


def flip_x(images: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Mirror image b left-right where `flip[b]` is true."""
    return tf.where(tf.reshape(flip, [-1, 1, 1, 1]), tf.reverse(images, axis=[2]), images)


def rotate90(images: tf.Tensor, turns: tf.Tensor) -> tf.Tensor:
    """Rotate image b by `turns[b]` x 90 degrees counter-clockwise (square images only)."""
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"rotate90 needs square images, got {images.shape[1]}x{images.shape[2]}")
    once = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[1])
    twice = tf.reverse(images, axis=[1, 2])
    thrice = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[2])
    turns = tf.reshape(tf.math.floormod(tf.cast(turns, tf.int32), 4), [-1, 1, 1, 1])
    rotated = tf.where(turns == 1, once, images)
    rotated = tf.where(turns == 2, twice, rotated)
    return tf.where(turns == 3, thrice, rotated)


# ---- DiffAugment --------------------------------------------------------------------------------
def random_color(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """DiffAugment color: brightness +U(-0.5, 0.5), saturation xU(0, 2), contrast xU(0.5, 1.5)."""
    batch = tf.shape(images)[0]
    brightness, saturation, contrast = _split(seed, 3)
    images = adjust_brightness(images, _uniform(brightness, batch, -0.5, 0.5))
    if images.shape[3] > 1:
        images = adjust_saturation(images, _uniform(saturation, batch, 0.0, 2.0))
    return adjust_contrast(images, _uniform(contrast, batch, 0.5, 1.5))


def random_translation(images: tf.Tensor, seed: tf.Tensor, ratio: float = 0.125) -> tf.Tensor:
    """DiffAugment translation: up to `ratio` of the size each way, zero padded."""
    batch = tf.shape(images)[0]
    max_y = int(images.shape[1] * ratio + 0.5)
    max_x = int(images.shape[2] * ratio + 0.5)
    seed_y, seed_x = _split(seed, 2)
    return translate(images, _integers(seed_y, batch, -max_y, max_y),
                     _integers(seed_x, batch, -max_x, max_x))


def cutout_size(images: tf.Tensor, ratio: float = 0.5) -> int:
    """Side of the cutout square: `ratio` of the shorter image side, rounded."""
    return int(min(images.shape[1], images.shape[2]) * ratio + 0.5)


def random_cutout(images: tf.Tensor, seed: tf.Tensor, ratio: float = 0.5) -> tf.Tensor:
    """DiffAugment cutout: zero a square of side `ratio` x size at a uniform random centre."""
    batch = tf.shape(images)[0]
    seed_y, seed_x = _split(seed, 2)
    return cutout(images, _integers(seed_y, batch, 0, images.shape[1] - 1),
                  _integers(seed_x, batch, 0, images.shape[2] - 1), cutout_size(images, ratio))


_DIFFAUGMENT_FUNCTIONS = {"color": random_color, "translation": random_translation,
                          "cutout": random_cutout}


def diff_augment(images: tf.Tensor, policy: str = DIFFAUGMENT_POLICY,
                 seed: SeedLike = None) -> tf.Tensor:
    """DiffAugment: apply each op of `policy` to every image, differentiably, same dtype out."""
    names = parse_policy(policy)
    if not names:
        return images
    out = tf.cast(images, tf.float32)  # means in bfloat16 lose too much precision
    for name, op_seed in zip(names, _split(seed_pair(seed), len(names)), strict=True):
        out = _DIFFAUGMENT_FUNCTIONS[name](out, op_seed)
    return tf.cast(out, images.dtype)


# ---- ADA ----------------------------------------------------------------------------------------
def ada_augment(images: tf.Tensor, p: float | tf.Tensor | tf.Variable,
                seed: SeedLike = None) -> tf.Tensor:
    """ADA: x-flip, 90-degree rotation, integer translation (reflect), brightness, contrast,
    saturation and cutout, each applied to each image independently with probability `p`.

    Magnitudes follow StyleGAN2-ADA: flip and rotation uniform over their outcomes, translation
    up to 1/8 of the size, brightness +N(0, 0.2), contrast x2^N(0, 0.5), saturation x2^N(0, 1),
    cutout square of half the size.
    """
    out = tf.cast(images, tf.float32)
    batch = tf.shape(out)[0]
    p = tf.cast(p, tf.float32)
    seeds = iter(_split(seed_pair(seed), 16))

    def chosen() -> tf.Tensor:
        return tf.random.stateless_uniform([batch], next(seeds)) < p

    def normal(std: float) -> tf.Tensor:
        return tf.random.stateless_normal([batch], next(seeds), stddev=std)

    def gated(on: tf.Tensor, value: tf.Tensor, identity: float | int) -> tf.Tensor:
        return tf.where(on, value, tf.cast(identity, value.dtype))

    # As in StyleGAN2-ADA, a chosen flip or rotation is itself uniform over its outcomes, identity
    # included, so identity stays the likeliest outcome (the non-leaking condition) for all p < 1.
    out = flip_x(out, chosen() & (_integers(next(seeds), batch, 0, 1) == 1))
    if out.shape[1] == out.shape[2]:
        out = rotate90(out, gated(chosen(), _integers(next(seeds), batch, 0, 3), 0))
    max_y, max_x = int(out.shape[1] * 0.125 + 0.5), int(out.shape[2] * 0.125 + 0.5)
    on = chosen()
    out = translate(out, gated(on, _integers(next(seeds), batch, -max_y, max_y), 0),
                    gated(on, _integers(next(seeds), batch, -max_x, max_x), 0), padding="reflect")
    out = adjust_brightness(out, gated(chosen(), normal(0.2), 0.0))
    out = adjust_contrast(out, gated(chosen(), tf.pow(2.0, normal(0.5)), 1.0))
    if out.shape[3] > 1:
        out = adjust_saturation(out, gated(chosen(), tf.pow(2.0, normal(1.0)), 1.0))
    # A cutout centre far outside the image cuts nothing: how images that skip cutout are spared.
    on = chosen()
    away = 10 * max(out.shape[1], out.shape[2])
    out = cutout(out, gated(on, _integers(next(seeds), batch, 0, out.shape[1] - 1), away),
                 gated(on, _integers(next(seeds), batch, 0, out.shape[2] - 1), away),
                 cutout_size(out))
    return tf.cast(out, images.dtype)


# Real images shown for ADA's p to go from 0 to 1, whatever the set's size (StyleGAN2-ADA counts
# in images shown too; its 500 kimg suits runs of thousands of kimg, ours are tens: 5 kimg lets p
# cross [0, 1] in under a tenth of the default budget, recipes.DEFAULT_KIMG).
ADA_SPEED_IMAGES = 5_000


def ada_update(p: float | tf.Tensor, rt: float | tf.Tensor, images_seen: float | tf.Tensor,
               target: float = 0.6, speed_images: float = ADA_SPEED_IMAGES) -> tf.Tensor:
    """New ADA probability: step by images_seen / speed_images toward less overfitting, in [0, 1].

    rt = E[sign(D(real))]: above `target` the discriminator is too sure of the reals, so p rises;
    below it p falls. `speed_images` is how many real images it takes p to move from 0 to 1.
    """
    step = tf.sign(tf.cast(rt, tf.float32) - target) * tf.cast(images_seen, tf.float32)
    return tf.clip_by_value(tf.cast(p, tf.float32) + step / speed_images, 0.0, 1.0)

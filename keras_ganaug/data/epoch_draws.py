"""The random draws of a training epoch (its order, its augmentations) as pure functions of the
run's seed and the epoch, never of a shuffle or seed state: a run resumed at epoch e redraws
exactly what the uninterrupted run drew. The classifier's and the GAN's batches both come from here.
"""

from __future__ import annotations


def epoch_seed(seed: int, epoch, *path):
    """The [2] int64 seed of the random draws of `epoch` (then folded with each of `path`, e.g. a
    batch index): a pure function of its arguments, so a resumed run redraws them exactly."""
    import tensorflow as tf

    key = tf.constant([seed, 0], tf.int64)
    for part in (epoch, *path):
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(part, tf.int64))
    return key


def permutations(seed, count: int, n: int):
    """[count, n] int32: `count` random orders of range(n), drawn from the [2] `seed`."""
    import tensorflow as tf

    # Full-range int64 keys: ties, which would bias argsort, are as good as impossible.
    keys = tf.random.stateless_uniform([count, n], seed, minval=None, maxval=None, dtype=tf.int64)
    return tf.argsort(keys, axis=1, stable=True)

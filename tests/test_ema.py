"""The exported generator is an EMA of the trained one: averaged weights, copied batch-norm stats."""

from __future__ import annotations

import numpy as np


def test_ema_averages_trainable_weights_and_copies_batch_norm_statistics():
    import keras
    import tensorflow as tf

    from keras_ganaug.gans import DCGAN

    gan = DCGAN(image_size=32, channels=3, latent_dim=16, width=8, seed=0, ema_decay=0.99)
    gan.compile(g_optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5),
                d_optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5))
    images = tf.random.stateless_uniform((40, 32, 32, 3), (1, 2), -1.0, 1.0)
    start = [w.numpy().copy() for w in gan.generator.trainable_weights]
    visited = []  # the generator's trainable weights after each step

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            visited.append([w.numpy().copy() for w in gan.generator.trainable_weights])

    gan.fit(tf.data.Dataset.from_tensor_slices(images).batch(8), epochs=1, verbose=0,
            callbacks=[Record()])

    stats = gan.generator.non_trainable_weights
    assert any("moving" in w.path for w in stats)  # the generator has batch norm to copy
    for ema_w, w in zip(gan.ema_generator.non_trainable_weights, stats, strict=True):
        np.testing.assert_array_equal(ema_w.numpy(), w.numpy())
    # Trainable weights: the warm-up EMA of the weights visited, min(0.99, (1+t)/(10+t)) kept
    # of the average at step t = 1, 2, ...
    expected = start
    for t, weights in enumerate(visited, start=1):
        decay = min(0.99, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights, strict=True)]
    assert len(visited) == 5
    for ema_w, e in zip(gan.ema_generator.trainable_weights, expected, strict=True):
        np.testing.assert_allclose(ema_w.numpy(), e, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(ema_w.numpy(), w.numpy())
               for ema_w, w in zip(gan.ema_generator.trainable_weights,
                                   gan.generator.trainable_weights, strict=True))

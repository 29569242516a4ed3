"""DCGAN (Radford et al. 2016): the non-saturating GAN loss on logits; z ~ N(0, I)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ganaug.gans.base import GAN


def bce_logits(labels_value: float, logits):
    """Per-example sigmoid cross-entropy against a constant label, computed in float32."""
    logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
    return tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), labels_value), logits)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class DCGAN(GAN):
    gan_type = "dcgan"

    def discriminator_loss(self, real_out, fake_out, u, class_ids):
        return bce_logits(1.0, real_out["score"]) + bce_logits(0.0, fake_out["score"]), {}

    def generator_loss(self, fake_out, u, class_ids):
        return bce_logits(1.0, fake_out["score"]), {}

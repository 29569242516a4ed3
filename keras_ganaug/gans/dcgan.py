"""DCGAN (Radford et al. 2016): the non-saturating GAN loss on logits, or the hinge loss
(--loss hinge, as FastGAN and BigGAN train); z ~ N(0, I)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ganaug.gans.base import GAN, Step


def bce_logits(labels_value: float, logits):
    """Per-example sigmoid cross-entropy against a constant label, computed in float32."""
    logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
    return tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), labels_value), logits)


def hinge_d(real_scores, fake_scores):
    """Per-example max(0, 1 - D(x)) + max(0, 1 + D(G(z))) (Lim & Ye 2017), in float32."""
    real = tf.cast(tf.reshape(real_scores, [-1]), tf.float32)
    fake = tf.cast(tf.reshape(fake_scores, [-1]), tf.float32)
    return tf.nn.relu(1.0 - real) + tf.nn.relu(1.0 + fake)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class DCGAN(GAN):
    gan_type = "dcgan"

    def discriminator_loss(self, step: Step):
        real, fake = step.real_out["score"], step.fake_out["score"]
        if self.recipe.loss == "hinge":
            return hinge_d(real, fake), {}
        return bce_logits(1.0, real) + bce_logits(0.0, fake), {}

    def generator_loss(self, step: Step):
        fake = step.fake_out["score"]
        if self.recipe.loss == "hinge":  # the generator's side of the hinge loss: -D(G(z))
            return -tf.cast(tf.reshape(fake, [-1]), tf.float32), {}
        return bce_logits(1.0, fake), {}

"""Conditional GAN (Mirza & Osindero 2014): DCGAN's loss with the class given to both networks.

The generator gets the class as a one-hot vector concatenated to z (its first layer is dense, so
this is as expressive as an embedding and needs no extra weights to save). The discriminator is
the projection discriminator of backbones.common.discriminator_outputs (Miyato & Koyama 2018): with few
images per class an inner product with a class embedding is more stable than one-hot planes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ganaug.gans.dcgan import DCGAN


class OneHotConditioning:
    """Mixin for a GAN: class-conditional, the generator's input is [z, one_hot(class)]."""

    conditional = True

    @property
    def generator_input_dim(self) -> int:
        return self.latent_dim + self.num_classes

    def generator_input(self, z, u, class_ids):
        one_hot = tf.one_hot(tf.cast(class_ids, tf.int32), self.num_classes, dtype=z.dtype)
        return tf.concat([z, one_hot], axis=1)

    @property
    def latent_size(self) -> int:
        """The exported generate_from_latent takes z alone and builds the class part itself."""
        return self.latent_dim

    def latent_inputs(self, latent, class_ids):
        class_ids = self.resolve_class_ids(class_ids)
        return self.generator_input(latent, None, class_ids), class_ids


@keras.saving.register_keras_serializable(package="keras_ganaug")
class CGAN(OneHotConditioning, DCGAN):
    gan_type = "cgan"

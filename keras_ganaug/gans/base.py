"""The one GAN training loop. Each GAN file only says what differs: its losses and its latent.

A GAN here is a subclassed keras.Model whose `train_step` runs `d_steps` discriminator updates
(separate D passes on real and fake images, both through the same differentiable augmentation),
then one generator update, then the EMA of the generator. Losses are per-example vectors reduced
with `tf.nn.compute_average_loss`, so the same code is right on one device and under tf.distribute.

What a subclass provides:
  gan_type, conditional          class attributes
  generator_input(z, u, ids)     noise z ~ N(0,1), uniforms u ~ U(0,1) -> the generator's input vector
  discriminator_loss(...)        per-example D loss (+ named extra terms to log)
  generator_loss(...)            per-example G loss (+ named extra terms to log)
and optionally code_dims (uniforms it consumes), heads (extra D outputs), penalty() (WGAN-GP),
config_options (GANConfig fields its constructor takes) and export_info() (extra metadata).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ganaug.gans import networks
from keras_ganaug.gans.diffaugment import make_augmenter


class GAN(keras.Model):
    gan_type = "gan"
    conditional = False
    d_steps = 1
    code_dims = 0  # uniform numbers per sample the latent needs beyond z (InfoGAN codes)
    d_norm = "batch"
    extra_losses: tuple[str, ...] = ()  # names of additional loss terms to track and log
    default_learning_rate = 2e-4
    default_betas = (0.5, 0.999)
    config_options: tuple[str, ...] = ()  # GANConfig fields passed to the constructor by name

    def __init__(self, image_size: int, channels: int = 3, latent_dim: int = 128,
                 num_classes: int = 1, trained_class: int = 0, augment: str = "none",
                 ema_decay: float | None = 0.999, width: int = 64, seed: int = 0,
                 ada_speed_images: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        self.num_classes, self.trained_class = num_classes, trained_class
        self.augment, self.ema_decay, self.width, self.seed = augment, ema_decay, width, seed
        self.generator = networks.build_generator(image_size, channels, self.generator_input_dim,
                                                  width)
        self.discriminator = networks.build_discriminator(
            image_size, channels, width, norm=self.d_norm,
            num_classes=num_classes if self.conditional else 0, heads=self.heads())
        self.ema_generator = None
        if ema_decay:
            self.ema_generator = networks.build_generator(
                image_size, channels, self.generator_input_dim, width, name="ema_generator")
            self.ema_generator.set_weights(self.generator.get_weights())
        self.seed_generator = keras.random.SeedGenerator(seed)
        # ADA's p must be able to cross [0, 1] within a few dozen epochs whatever the set size.
        self.ada_speed_images = ada_speed_images
        ada_options = {"speed_images": ada_speed_images} if augment == "ada" and ada_speed_images else {}
        self.augmenter = make_augmenter(augment, seed=seed, **ada_options)
        self.g_steps = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                       trainable=False, name="g_steps")
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("d_loss", "g_loss", *self.extra_losses)}
        self.built = True  # the networks are functional models, built above

    # ---- what subclasses define -------------------------------------------------------------
    @property
    def generator_input_dim(self) -> int:
        return self.latent_dim

    def heads(self) -> dict[str, int]:
        return {}

    def generator_input(self, z, u, class_ids):
        return z

    def discriminator_loss(self, real_out, fake_out, u, class_ids):
        raise NotImplementedError

    def generator_loss(self, fake_out, u, class_ids):
        raise NotImplementedError

    def penalty(self, real, fake, class_ids):
        """Extra per-example D loss on the images themselves (WGAN-GP's gradient penalty)."""
        return None

    def export_info(self) -> dict:
        """GAN-specific settings for the exported metadata (InfoGAN's code sizes, n_critic...)."""
        return {}

    # ---- the shared loop --------------------------------------------------------------------
    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        super().compile(**kwargs)
        lr, (b1, b2) = self.default_learning_rate, self.default_betas
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(lr, beta_1=b1, beta_2=b2)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(lr, beta_1=b1, beta_2=b2)
        # Built now so their state exists before a checkpoint is restored into it (resume).
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def discriminate(self, images, class_ids, training=True):
        inputs = [images, class_ids] if self.conditional else images
        return self.discriminator(inputs, training=training)

    def draw_noise(self, batch_size):
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        u = keras.random.uniform((batch_size, self.code_dims), seed=self.seed_generator)
        return z, u

    def _average(self, per_example, batch_size):
        """Mean over the global batch: right whether one replica or many sum their gradients."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.nn.compute_average_loss(per_example, global_batch_size=batch_size * replicas)

    def _apply(self, optimizer, loss, tape, variables):
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def train_step(self, data):
        real, class_ids = data
        batch_size = tf.shape(real)[0]
        logs = {}
        for _ in range(self.d_steps):
            z, u = self.draw_noise(batch_size)
            fake = self.generator(self.generator_input(z, u, class_ids), training=True)
            with tf.GradientTape() as tape:
                real_out = self.discriminate(self.augmenter(real, training=True), class_ids)
                fake_out = self.discriminate(self.augmenter(fake, training=True), class_ids)
                d_loss, d_terms = self.discriminator_loss(real_out, fake_out, u, class_ids)
                penalty = self.penalty(real, fake, class_ids)
                if penalty is not None:
                    d_loss += penalty
                    d_terms["gp"] = penalty
                d_total = self._average(d_loss, batch_size)
            self._apply(self.d_optimizer, d_total, tape, self.discriminator.trainable_variables)
        self.augmenter.update(real_out["score"])
        logs.update(d_terms)

        z, u = self.draw_noise(batch_size)
        with tf.GradientTape() as tape:
            fake = self.generator(self.generator_input(z, u, class_ids), training=True)
            fake_out = self.discriminate(self.augmenter(fake, training=True), class_ids)
            g_loss, g_terms = self.generator_loss(fake_out, u, class_ids)
            g_total = self._average(g_loss, batch_size)
        self._apply(self.g_optimizer, g_total, tape, self.generator.trainable_variables)
        logs.update(g_terms)
        self.g_steps.assign_add(1)
        self._update_ema()

        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        for name in self.extra_losses:
            self.trackers[name].update_state(logs[name])
        out = {name: tracker.result() for name, tracker in self.trackers.items()}
        if self.augmenter.p is not None:
            out["ada_p"] = self.augmenter.p
        return out

    def _update_ema(self):
        """EMA with the usual warm-up, min(decay, (1+t)/(10+t)), so short runs are not all init."""
        if self.ema_generator is None:
            return
        t = tf.cast(self.g_steps, tf.float32)
        decay = tf.minimum(tf.constant(self.ema_decay, tf.float32), (1.0 + t) / (10.0 + t))
        for ema_w, w in zip(self.ema_generator.weights, self.generator.weights, strict=True):
            ema_w.assign(decay * ema_w + (1.0 - decay) * tf.cast(w, ema_w.dtype))

    # ---- sampling (shared by callbacks, export and synthesis) --------------------------------
    @property
    def sampling_generator(self) -> keras.Model:
        """The generator users get: the EMA copy when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def seeded_inputs(self, count, seed, class_id):
        """Stateless (count, seed, class_id) -> (generator input, class ids): same seed, same input.

        class_id -1 means "any": the trained class of an unconditional GAN, uniform over classes for
        a conditional one. An unconditional GAN rejects any other class than its own.
        """
        seed = tf.cast(seed, tf.int64)
        z = tf.random.stateless_normal((count, self.latent_dim), seed=tf.stack([seed, 1]))
        u = tf.random.stateless_uniform((count, self.code_dims), seed=tf.stack([seed, 2]))
        class_id = tf.cast(class_id, tf.int32)
        if self.conditional:
            tf.debugging.assert_less(class_id, self.num_classes,
                                     message="class_id must be -1 or a class index")
            drawn = tf.random.stateless_uniform((count,), seed=tf.stack([seed, 3]), minval=0,
                                                maxval=self.num_classes, dtype=tf.int32)
            class_ids = tf.where(class_id < 0, drawn, tf.fill((count,), class_id))
        else:
            tf.debugging.assert_equal(
                tf.logical_or(class_id < 0, tf.equal(class_id, self.trained_class)), True,
                message="this generator was trained on one class: class_id must be -1 or "
                        "the trained class index")
            class_ids = tf.fill((count,), tf.constant(self.trained_class, tf.int32))
        return self.generator_input(z, u, class_ids), class_ids

    def generate(self, count: int, seed: int, class_id: int = -1):
        """float32 [-1, 1] images from the sampling generator, deterministic in `seed`."""
        inputs, class_ids = self.seeded_inputs(count, seed, class_id)
        return self.sampling_generator(inputs, training=False), class_ids

    def get_config(self):
        return {"image_size": self.image_size, "channels": self.channels,
                "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "trained_class": self.trained_class, "augment": self.augment,
                "ema_decay": self.ema_decay, "width": self.width, "seed": self.seed,
                "ada_speed_images": self.ada_speed_images}

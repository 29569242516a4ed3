"""The one GAN training loop. Each GAN file only says what differs: its losses and its latent.

A GAN here is a subclassed keras.Model whose `train_step` runs `d_steps` discriminator updates
(separate D passes on real and fake images, both through the same differentiable augmentation),
then one generator update, then the EMA of the generator. Losses are per-example vectors reduced
with `tf.nn.compute_average_loss`, so the same code is right on one device and under tf.distribute.

The networks come from the recipe's backbone (gans/backbones: `--arch`), which may add networks
trained with D (the few-shot backbone's decoders) and loss terms of its own. Every loss term reads
one record of the step, `Step` (in the spirit of StyleGAN2-ADA's Loss.accumulate_gradients): the
loop owns the schedule, the GAN its adversarial loss, the recipe its regularizers (R1, LeCam), the
backbone its auxiliary terms; each returns per-example terms by name, which the loop sums and logs.

What a subclass provides:
  gan_type, conditional          class attributes (gan_type: a name in gans/registry.GAN_KINDS,
                                 whose record becomes the class's `kind`)
  generator_input(z, u, ids)     noise z ~ N(0,1), uniforms u ~ U(0,1) -> the generator's input vector
  discriminator_loss(step)       per-example D loss (+ named parts to log, already in it)
  generator_loss(step)           per-example G loss (+ named parts to log)
and optionally code_dims (uniforms it consumes), heads (extra D outputs), export_info() (extra
metadata), latent_size / latent_inputs() (what the exported generate_from_latent takes) and, for
latent codes a user may set (InfoGAN), latent_codes = True with coded_inputs() and
write_extra_samples(). The constructor options a GAN takes are its kind's (registry.GANKind).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

from keras_ganaug.errors import UserError
from keras_ganaug.gans.augmenters import make_augmenter
from keras_ganaug.gans.backbones import accepts, backbone, call_with_options
from keras_ganaug.gans.recipes import RECIPE_OPTIONS, Recipe
from keras_ganaug.gans.registry import GANKind, gan_kind
from keras_ganaug.gans.regularizers import RecipeRegularizers


@dataclass
class Step:
    """One record of a training step, what every loss term may read. Images are float [-1, 1]
    [B,H,W,C]; `*_seen` are what D saw (after the differentiable augmentation); `*_out` D's output
    dicts ("score" [B,1] float32, heads, backbone maps). In the generator phase real_out is None
    and fake is taped for the generator's gradient."""

    real: tf.Tensor
    real_seen: tf.Tensor | None
    fake: tf.Tensor
    fake_seen: tf.Tensor
    real_out: dict | None
    fake_out: dict
    z: tf.Tensor
    u: tf.Tensor
    class_ids: tf.Tensor


class GAN(RecipeRegularizers, keras.Model):
    gan_type = "gan"
    conditional = False
    latent_codes = False  # codes a user may set when sampling (InfoGAN: generate_with_codes)
    d_steps = 1
    code_dims = 0  # uniform numbers per sample the latent needs beyond z (InfoGAN codes)
    d_norm = "batch"
    extra_losses: tuple[str, ...] = ()  # names of additional loss terms to track and log
    default_learning_rate = 2e-4
    default_betas = (0.5, 0.999)
    kind: GANKind = gan_kind(gan_type)  # what the GAN takes (its options, its own penalty...)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.kind = gan_kind(cls.gan_type)  # one record per name, read by the pre-TF checks too

    def __init__(self, image_size: int, channels: int = 3, latent_dim: int = 128,
                 num_classes: int = 1, trained_class: int = 0, augment: str = "none",
                 ema_decay: float | None = 0.999, width: int = 64, seed: int = 0,
                 ada_speed_images: float | None = None, **kwargs):
        options = {name: kwargs.pop(name) for name in RECIPE_OPTIONS if name in kwargs}
        super().__init__(**kwargs)
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        self.num_classes, self.trained_class = num_classes, trained_class
        self.augment, self.ema_decay, self.width, self.seed = augment, ema_decay, width, seed
        self.recipe = Recipe(**options).resolved(type(self).d_norm)
        self.recipe.check(self.gan_type, augment, self.conditional)
        self.backbone = backbone(self.recipe.arch)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.build_networks()
        # None: augment.ADA_SPEED_IMAGES, real images shown for p to cross [0, 1], whatever N.
        self.ada_speed_images = ada_speed_images
        ada_options = {"speed_images": ada_speed_images} if augment == "ada" and ada_speed_images else {}
        if self.recipe.diffaugment_policy is not None:
            ada_options["policy"] = self.recipe.diffaugment_policy
        self.augmenter = make_augmenter(augment, seed=seed, **ada_options)
        self.g_steps = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                       trainable=False, name="g_steps")
        self.add_regularizer_state()
        recipe_terms = (("r1",) if self.recipe.r1_gamma else ()) + (
            ("lecam",) if self.recipe.lecam_weight else ()) + (
            ("recon",) if self.decoders is not None else ())
        self.extra_losses = (*type(self).extra_losses, *recipe_terms)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("d_loss", "g_loss", *self.extra_losses)}
        self.built = True  # the networks are functional models, built above

    def build_networks(self) -> None:
        """The backbone's generator, discriminator, EMA generator and auxiliary networks (trained
        with the discriminator: `decoders`, or None), with the recipe options each takes."""
        # class_norm: the generator's input ends in the one-hot class (OneHotConditioning). A
        # backbone whose generator cannot read it must refuse, not silently build without it.
        options = {**asdict(self.recipe),
                   "class_columns": self.num_classes if self.recipe.class_norm else 0}
        if options["class_columns"] and not accepts(self.backbone.build_generator, "class_columns"):
            raise UserError(f"--class-norm: the {self.recipe.arch} backbone's generator has no "
                            f"class-conditional norm")
        size, channels, width = self.image_size, self.channels, self.width

        def generator(name):
            return call_with_options(self.backbone.build_generator, size, channels,
                                     self.generator_input_dim, width, name=name, options=options)

        self.generator = generator("generator")
        self.discriminator = call_with_options(
            self.backbone.build_discriminator, size, channels, width, norm=self.recipe.d_norm,
            num_classes=self.num_classes if self.conditional else 0, heads=self.heads(),
            options={k: v for k, v in options.items() if k != "d_norm"})
        self.decoders = call_with_options(self.backbone.build_auxiliary, size, channels, width,
                                          options=options)
        self.ema_generator = None
        if self.ema_decay:
            self.ema_generator = generator("ema_generator")
            self.ema_generator.set_weights(self.generator.get_weights())

    @property
    def discriminator_variables(self) -> list:
        """What the discriminator's optimizer trains: D and the networks trained with it."""
        auxiliary = [v for net in (self.decoders or {}).values() for v in net.trainable_variables]
        return self.discriminator.trainable_variables + auxiliary

    # ---- what subclasses define -------------------------------------------------------------
    @property
    def generator_input_dim(self) -> int:
        return self.latent_dim

    def heads(self) -> dict[str, int]:
        return {}

    def generator_input(self, z, u, class_ids):
        return z

    def discriminator_loss(self, step: Step):
        raise NotImplementedError

    def generator_loss(self, step: Step):
        raise NotImplementedError

    def write_extra_samples(self, folder) -> None:
        """Figures beside the sample grids a GAN has to show (InfoGAN's code sweep)."""

    def export_info(self) -> dict:
        """GAN-specific settings for the exported metadata (InfoGAN's code sizes, n_critic...)."""
        return {}

    def recipe_info(self) -> dict:
        """The recipe options, as get_config and the exported metadata record them."""
        return asdict(self.recipe)

    # ---- the shared loop --------------------------------------------------------------------
    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        super().compile(**kwargs)
        lr, (b1, b2) = self.default_learning_rate, self.default_betas
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(self.recipe.g_lr or lr,
                                                                beta_1=b1, beta_2=b2)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(self.recipe.d_lr or lr,
                                                                beta_1=b1, beta_2=b2)
        if self.generator.dtype_policy.compute_dtype == "float16":
            # float16 gradients underflow without loss scaling; Keras only wraps the optimizer
            # given to compile(optimizer=...), so the two GAN optimizers are wrapped here.
            self.g_optimizer, self.d_optimizer = (
                opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
                else keras.optimizers.LossScaleOptimizer(opt)
                for opt in (self.g_optimizer, self.d_optimizer))
        # Built now so their state exists before a checkpoint is restored into it (resume).
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def discriminate(self, images, class_ids, training=True):
        inputs = [images, class_ids] if self.conditional else images
        return self.discriminator(inputs, training=training)

    def draw_noise(self, batch_size):
        """z ~ N(0, I) and u ~ U(0, 1) for this replica's `batch_size` samples.

        Every replica draws the noise of the whole global batch from the same seed and keeps its
        own slice: replicas get different noise, and N replicas draw what one device would.
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        z = keras.random.normal((batch_size * replicas, self.latent_dim), seed=self.seed_generator)
        u = keras.random.uniform((batch_size * replicas, self.code_dims), seed=self.seed_generator)
        if replicas > 1:
            start = context.replica_id_in_sync_group * batch_size
            z, u = z[start:start + batch_size], u[start:start + batch_size]
        return z, u

    def _average(self, per_example, batch_size):
        """Mean over the global batch: right whether one replica or many sum their gradients."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.nn.compute_average_loss(per_example, global_batch_size=batch_size * replicas)

    def _apply(self, optimizer, loss, tape, variables):
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            with tape:  # recorded, or the tape would not see the scaled loss (gradients None)
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)  # apply_gradients unscales them again
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    def unpack(self, data):
        """A batch of images alone or (images, labels) -> (images, class ids).

        Unconditional GANs ignore labels, so a dataset of images is enough for them.
        """
        real, class_ids, _ = keras.utils.unpack_x_y_sample_weight(data)
        if class_ids is not None:
            return real, class_ids
        if self.conditional:
            raise UserError(f"{type(self).__name__} is class-conditional: fit it on (images, "
                            f"labels) batches, not on images alone")
        return real, tf.fill(tf.shape(real)[:1], tf.constant(self.trained_class, tf.int32))

    def train_step(self, data):
        real, class_ids = self.unpack(data)
        batch_size = tf.shape(real)[0]
        g_tape = tf.GradientTape()
        for d_step in range(self.d_steps):
            z, u = self.draw_noise(batch_size)
            # The last D step's fakes are taped so the generator update reuses them (as PyTorch's
            # DCGAN example does) instead of running the generator forward again; the fakes of
            # WGAN-GP's earlier critic steps train only the critic and need no tape.
            reuse = d_step == self.d_steps - 1 and self.recipe.g_fakes == "reused"
            with g_tape if reuse else contextlib.nullcontext():
                fake = self.generator(self.generator_input(z, u, class_ids), training=True)
            with tf.GradientTape() as tape:
                d_loss, d_terms, real_out = self._discriminator_terms(real, fake, z, u, class_ids)
                d_total = self._average(d_loss, batch_size)
            self._apply(self.d_optimizer, d_total, tape, self.discriminator_variables)
        self.augmenter.update(real_out["score"])

        if self.recipe.g_fakes == "fresh":  # new noise through the generator, after the D update
            with g_tape:
                z, u = self.draw_noise(batch_size)
                fake = self.generator(self.generator_input(z, u, class_ids), training=True)
        with g_tape:  # the updated discriminator judges the fakes (the same ones, when reused)
            fake_seen = self.augmenter(fake, training=True)
            step = Step(real, None, fake, fake_seen, None,
                        self.discriminate(fake_seen, class_ids), z, u, class_ids)
            g_loss, g_terms = self.generator_loss(step)
            g_total = self._average(g_loss, batch_size)
        self._apply(self.g_optimizer, g_total, g_tape, self.generator.trainable_variables)
        self.g_steps.assign_add(1)
        self._update_ema()
        return self._log(d_loss, g_loss, {**d_terms, **g_terms})

    def _discriminator_terms(self, real, fake, z, u, class_ids):
        """(per-example D loss, its named terms, D's output on the reals) of one D step: the
        GAN's loss, the recipe's regularizers and the backbone's auxiliary terms, summed."""
        real_seen = self.augmenter(real, training=True)
        fake_seen = self.augmenter(tf.stop_gradient(fake), training=True)
        real_out = self.discriminate(real_seen, class_ids)
        step = Step(real, real_seen, tf.stop_gradient(fake), fake_seen, real_out,
                    self.discriminate(fake_seen, class_ids), z, u, class_ids)
        d_loss, terms = self.discriminator_loss(step)
        for name, term in {**self.regularizers(step),
                           **self.backbone.auxiliary_terms(self, step)}.items():
            d_loss += term
            terms[name] = term
        return d_loss, terms, real_out

    def _log(self, d_loss, g_loss, terms: dict) -> dict:
        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        for name in self.extra_losses:
            self.trackers[name].update_state(terms[name])
        out = {name: tracker.result() for name, tracker in self.trackers.items()}
        if self.augmenter.p is not None:
            out["ada_p"] = self.augmenter.p
        return out

    def _update_ema(self):
        """EMA of the trainable weights with the usual warm-up, min(decay, (1+t)/(10+t)), so short
        runs are not all init; the batch-norm moving statistics are copied, not averaged: they
        must describe the activations of the averaged weights' own recent inputs, and an average
        of statistics lags behind the network it normalizes (StyleGAN2-ADA copies buffers too)."""
        if self.ema_generator is None:
            return
        t = tf.cast(self.g_steps, tf.float32)
        decay = tf.minimum(tf.constant(self.ema_decay, tf.float32), (1.0 + t) / (10.0 + t))
        for ema_w, w in zip(self.ema_generator.trainable_weights, self.generator.trainable_weights,
                            strict=True):
            ema_w.assign(decay * ema_w + (1.0 - decay) * tf.cast(w, ema_w.dtype))
        for ema_w, w in zip(self.ema_generator.non_trainable_weights,
                            self.generator.non_trainable_weights, strict=True):
            ema_w.assign(tf.cast(w, ema_w.dtype))

    # ---- sampling (shared by callbacks, export and synthesis) --------------------------------
    @property
    def sampling_generator(self) -> keras.Model:
        """The generator users get: the EMA copy when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def seeded_inputs(self, count, seed, class_id):
        """Stateless (count, seed, class_id) -> (generator input, class ids): same seed, same input.

        class_id -1 means the trained class: the one the run was asked for (--class), which a
        conditional GAN learnt beside the others and an unconditional one alone. An
        unconditional GAN rejects any other class than its own.
        """
        seed = tf.cast(seed, tf.int64)
        z = tf.random.stateless_normal((count, self.latent_dim), seed=tf.stack([seed, 1]))
        u = tf.random.stateless_uniform((count, self.code_dims), seed=tf.stack([seed, 2]))
        class_ids = self.resolve_class_ids(tf.fill((count,), tf.cast(class_id, tf.int32)))
        return self.generator_input(z, u, class_ids), class_ids

    def resolve_class_ids(self, class_ids):
        """Asked class ids [N] -> the ids generated: -1 is the trained class; a conditional GAN
        makes any other class index asked, an unconditional one refuses every other class."""
        class_ids = tf.cast(class_ids, tf.int32)
        trained = tf.fill(tf.shape(class_ids), tf.constant(self.trained_class, tf.int32))
        if not self.conditional:
            tf.debugging.assert_equal(
                tf.logical_or(class_ids < 0, tf.equal(class_ids, self.trained_class)), True,
                message="this generator was trained on one class: class_id must be -1 or "
                        "the trained class index")
            return trained
        tf.debugging.assert_less(class_ids, self.num_classes,
                                 message="class_id must be -1 or a class index")
        tf.debugging.assert_greater_equal(class_ids, -1,
                                          message="class_id must be -1 or a class index")
        return tf.where(class_ids < 0, trained, class_ids)

    @property
    def latent_size(self) -> int:
        """Width of the exported generate_from_latent's latent: the generator's whole input."""
        return self.generator_input_dim

    def latent_inputs(self, latent, class_ids):
        """generate_from_latent's (latent, class ids [N]) -> (generator input, class ids)."""
        return latent, self.resolve_class_ids(class_ids)

    def generate(self, count: int, seed: int, class_id: int = -1):
        """float32 [-1, 1] images from the sampling generator, deterministic in `seed`."""
        inputs, class_ids = self.seeded_inputs(count, seed, class_id)
        return self.sampling_generator(inputs, training=False), class_ids

    # ---- Keras serialization: gan.save("x.keras") / keras.models.load_model("x.keras") ---------
    def get_config(self):
        return {"image_size": self.image_size, "channels": self.channels,
                "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "trained_class": self.trained_class, "augment": self.augment,
                "ema_decay": self.ema_decay, "width": self.width, "seed": self.seed,
                "ada_speed_images": self.ada_speed_images, **self.recipe_info(),
                "name": self.name}

    def get_compile_config(self):
        """compile()'s arguments with both GAN optimizers, so a loaded GAN trains on as it was."""
        config = super().get_compile_config()
        if not self.compiled:  # then Keras' config is empty and a loaded copy is not compiled
            return config
        return {**config, "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
                "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer)}

    def compile_from_config(self, config):
        # Keras' own does nothing for a model with its own compile(); loading restores the
        # optimizers' saved state after this has built them.
        self.compile(**keras.saving.deserialize_keras_object(config))

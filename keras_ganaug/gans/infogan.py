"""InfoGAN (Chen et al. 2016): latent codes the generator must make recoverable from its images.

The latent is [z, one_hot(c_cat), c_cont]: one categorical code with `cat_codes` values and
`cont_codes` continuous codes in [-1, 1], both drawn from the uniforms u of the shared loop. A Q
head on the discriminator body predicts the codes of fake images; the mutual-information bound
lambda_cat * CE(c_cat) + lambda_cont * NLL(c_cont) is added to the D/Q loss and to the G loss.
The continuous NLL is a Gaussian with a fixed unit std (0.5 (c - mu)^2): a learned std lets Q
shrink the loss by inflating it, which is unstable with the few images this package is for.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from keras_ganaug.errors import UserError
from keras_ganaug.gans.base import Step
from keras_ganaug.gans.dcgan import DCGAN


@keras.saving.register_keras_serializable(package="keras_ganaug")
class InfoGAN(DCGAN):
    gan_type = "infogan"
    latent_codes = True
    extra_losses = ("info_cat", "info_cont")
    lambda_cat = 1.0
    lambda_cont = 0.1

    def __init__(self, *args, cat_codes: int = 4, cont_codes: int = 2, **kwargs):
        if cat_codes < 2 or cont_codes < 0:
            raise UserError(f"InfoGAN codes: expected --cat-codes 2 or more and --cont-codes 0 or "
                            f"more, got {cat_codes} and {cont_codes}")
        # Set before the base class builds the networks, which read the sizes below.
        self.cat_codes, self.cont_codes = cat_codes, cont_codes
        super().__init__(*args, **kwargs)

    @property
    def code_dims(self) -> int:
        return 1 + self.cont_codes  # one uniform picks the category, one per continuous code

    @property
    def generator_input_dim(self) -> int:
        return self.latent_dim + self.cat_codes + self.cont_codes

    def heads(self) -> dict[str, int]:
        heads = {"q_cat": self.cat_codes}
        if self.cont_codes:
            heads["q_cont"] = self.cont_codes
        return heads

    def codes(self, u):
        """uniforms [B, code_dims] -> (categorical int32 [B], continuous float32 [B, M] in [-1, 1])."""
        u = tf.cast(u, tf.float32)
        categorical = tf.minimum(tf.cast(u[:, 0] * self.cat_codes, tf.int32), self.cat_codes - 1)
        return categorical, u[:, 1:] * 2.0 - 1.0

    def latent_with_codes(self, z, categorical, continuous):
        one_hot = tf.one_hot(categorical, self.cat_codes, dtype=z.dtype)
        return tf.concat([z, one_hot, tf.cast(continuous, z.dtype)], axis=1)

    def generator_input(self, z, u, class_ids):
        return self.latent_with_codes(z, *self.codes(u))

    def information_loss(self, fake_out, u):
        """Per-example (categorical cross-entropy, continuous Gaussian NLL) of Q on the fakes."""
        categorical, continuous = self.codes(u)
        cat_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            categorical, tf.cast(fake_out["q_cat"], tf.float32))
        if not self.cont_codes:
            return cat_loss, tf.zeros_like(cat_loss)
        error = continuous - tf.cast(fake_out["q_cont"], tf.float32)
        return cat_loss, 0.5 * tf.reduce_sum(tf.square(error), axis=1)

    def _with_information(self, adversarial, fake_out, u):
        cat_loss, cont_loss = self.information_loss(fake_out, u)
        total = adversarial + self.lambda_cat * cat_loss + self.lambda_cont * cont_loss
        return total, {"info_cat": cat_loss, "info_cont": cont_loss}

    def discriminator_loss(self, step: Step):
        adversarial, _ = super().discriminator_loss(step)
        return self._with_information(adversarial, step.fake_out, step.u)

    def generator_loss(self, step: Step):
        adversarial, _ = super().generator_loss(step)
        return self._with_information(adversarial, step.fake_out, step.u)

    # ---- sampling with explicit codes --------------------------------------------------------
    def coded_inputs(self, count, seed, categorical, continuous):
        """The generator input for given codes, z drawn from `seed` exactly as `generate` does."""
        seed = tf.cast(seed, tf.int64)
        categorical = tf.cast(categorical, tf.int32)
        tf.debugging.assert_equal(tf.shape(categorical)[0], count,
                                  message="categorical must hold `count` codes")
        tf.debugging.assert_equal(tf.shape(continuous)[0], count,
                                  message="continuous must hold `count` rows")
        tf.debugging.assert_less(categorical, self.cat_codes,
                                 message="categorical codes must be in [0, cat_codes)")
        tf.debugging.assert_non_negative(categorical, message="categorical codes must be >= 0")
        z = tf.random.stateless_normal((count, self.latent_dim), seed=tf.stack([seed, 1]))
        return self.latent_with_codes(z, categorical, continuous)

    def code_sweep(self, columns: int = 8, seed: int = 0):
        """float32 images: row k = categorical code k, columns sweep continuous code 0 over
        [-1, 1] (other codes 0); one fixed z, so only the codes change across the grid."""
        rows = self.cat_codes
        z = tf.random.stateless_normal((1, self.latent_dim), seed=[seed, 1])
        z = tf.repeat(z, rows * columns, axis=0)
        categorical = tf.repeat(tf.range(rows, dtype=tf.int32), columns)
        continuous = tf.zeros((rows * columns, self.cont_codes), tf.float32)
        if self.cont_codes:
            sweep = tf.tile(tf.linspace(-1.0, 1.0, columns), [rows])
            continuous = tf.concat([sweep[:, None], continuous[:, 1:]], axis=1)
        inputs = self.latent_with_codes(z, categorical, continuous)
        return self.sampling_generator(inputs, training=False)

    def write_extra_samples(self, folder: str | os.PathLike, columns: int = 8) -> None:
        """FOLDER/codes.png, the code sweep grid: what each code controls, at a glance."""
        from keras_ganaug.data.images import to_uint8
        from keras_ganaug.plots import image_grid, save_png

        images = to_uint8(self.code_sweep(columns)).numpy()
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_png(image_grid(images, columns=columns), Path(folder) / "codes.png")

    def export_info(self) -> dict:
        return {"cat_codes": self.cat_codes, "cont_codes": self.cont_codes,
                "lambda_cat": self.lambda_cat, "lambda_cont": self.lambda_cont}

    def get_config(self):
        return {**super().get_config(), "cat_codes": self.cat_codes,
                "cont_codes": self.cont_codes}

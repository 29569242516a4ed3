"""WGAN-GP (Gulrajani et al. 2017): a Wasserstein critic kept 1-Lipschitz by a gradient penalty.

The critic has no batch norm (layer norm instead: the penalty is a per-sample gradient, which
batch norm would couple across the batch), takes `n_critic` steps per generator step, and is
penalised by gp_weight * (||grad_x D(x_hat)|| - 1)^2 on x_hat = real + alpha (fake - real),
alpha ~ U[0, 1] per image. The penalty is computed in float32 with a nested tape inside the critic
tape (so its gradient with respect to the critic's weights is a true second derivative), with the
epsilon inside the square root so a zero gradient does not give a NaN.

With --augment the critic the losses train is D(T(x)), T the differentiable augmentation; the
penalty constrains that same function: x_hat goes through T before D, and the gradient is taken
with respect to the un-augmented x_hat (as StyleGAN2-ADA does for its R1 penalty).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ganaug.errors import UserError
from keras_ganaug.gans.base import GAN, Step
from keras_ganaug.gans.cgan import OneHotConditioning

NORM_EPSILON = 1e-12


def gradient_penalty(critic, real, fake, alpha, epsilon: float = NORM_EPSILON):
    """Per-example (||grad D(x_hat)||_2 - 1)^2 with x_hat = real + alpha (fake - real), float32.

    critic: images [B,H,W,C] -> scores [B] or [B,1]; alpha: [B,1,1,1] in [0, 1].
    """
    real, fake = tf.cast(real, tf.float32), tf.cast(fake, tf.float32)
    x_hat = real + tf.cast(alpha, tf.float32) * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        # Samples are independent (no batch norm), so d(sum)/dx_hat[b] = dD(x_hat[b])/dx_hat[b].
        total = tf.reduce_sum(tf.cast(critic(x_hat), tf.float32))
    grads = tf.cast(tape.gradient(total, x_hat), tf.float32)
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]) + epsilon)
    return tf.square(norms - 1.0)


def critic_scores(out) -> tf.Tensor:
    return tf.cast(tf.reshape(out["score"], [-1]), tf.float32)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class WGANGP(GAN):
    gan_type = "wgan-gp"
    d_norm = "layer"
    extra_losses = ("gp",)
    default_learning_rate = 1e-4
    default_betas = (0.0, 0.9)

    def __init__(self, *args, n_critic: int = 5, gp_weight: float = 10.0, **kwargs):
        if kwargs.get("augment") == "ada" and self.kind.ada_refusal:
            raise UserError(f"{type(self).__name__}: augment='ada' is refused: "
                            f"{self.kind.ada_refusal}; use augment='diffaugment'")
        super().__init__(*args, **kwargs)
        self.d_steps, self.gp_weight = n_critic, gp_weight  # d_steps: the loop's n_critic

    def discriminator_loss(self, step: Step):
        alpha = keras.random.uniform((tf.shape(step.real)[0], 1, 1, 1), seed=self.seed_generator)
        penalty = self.gp_weight * gradient_penalty(self.critic(step.class_ids), step.real,
                                                    step.fake, alpha)
        wasserstein = critic_scores(step.fake_out) - critic_scores(step.real_out)
        return wasserstein + penalty, {"gp": penalty}

    def generator_loss(self, step: Step):
        return -critic_scores(step.fake_out), {}

    def export_info(self) -> dict:
        return {"n_critic": self.d_steps, "gp_weight": self.gp_weight}

    def get_config(self):
        return {**super().get_config(), "n_critic": self.d_steps, "gp_weight": self.gp_weight}


@keras.saving.register_keras_serializable(package="keras_ganaug")
class ConditionalWGANGP(OneHotConditioning, WGANGP):
    """WGAN-GP with the class given to the generator (one-hot) and the critic (projection)."""

"""The recipe's discriminator regularizers (--r1-gamma, --lecam-weight), as a part of the GAN:
R1 on real images (Mescheder et al. 2018) and LeCam (Tseng et al. 2021). Each is a per-example
term of the D loss the loop sums with the GAN's own (gans/base.py)."""

from __future__ import annotations

import tensorflow as tf

LECAM_DECAY = 0.99  # of the EMAs of D's mean outputs the LeCam term anchors to (Tseng et al.)


class RecipeRegularizers:
    """Mixin for the GAN (keras.Model): the recipe's regularizer terms and the state they keep."""

    def add_regularizer_state(self) -> None:
        """LeCam's two EMAs, when on: weights, so checkpoints (resume) and .keras files keep the
        anchors; averaged over replicas, as the means they follow are each replica's."""
        if self.recipe.lecam_weight:
            self.lecam_ema = {kind: self.add_weight(shape=(), initializer="zeros", trainable=False,
                                                    aggregation="mean", name=f"lecam_ema_{kind}")
                              for kind in ("real", "fake")}

    def critic(self, class_ids):
        """images -> D's scores of their augmented copies: the function input-gradient penalties
        constrain (a D pass and augmentation draw of their own, taped by the input)."""
        def scores(images):
            return self.discriminate(self.augmenter(images, training=True), class_ids)["score"]

        return scores

    def regularizers(self, step) -> dict:
        """Per-example D regularizers of the recipe, by name: R1 and LeCam (when switched on)."""
        terms = {}
        if self.recipe.r1_gamma:
            terms["r1"] = 0.5 * self.recipe.r1_gamma * r1_penalty(self.critic(step.class_ids),
                                                                  step.real)
        if self.recipe.lecam_weight:
            terms["lecam"] = self.recipe.lecam_weight * self.lecam_term(
                step.real_out["score"], step.fake_out["score"])
        return terms

    def lecam_term(self, real_scores, fake_scores):
        """Per-example (D(x) - ema_fake)^2 + (D(G(z)) - ema_real)^2 (Tseng et al. 2021, eq. 3).

        The EMAs of the batch means move first, then anchor this batch (as the authors' code
        does); the first step sets them to its means (their start_itr warm-up), so the anchors
        do not start from an arbitrary 0. Scores of one sample each: there is no batch coupling.
        """
        real_scores = tf.cast(tf.reshape(real_scores, [-1]), tf.float32)
        fake_scores = tf.cast(tf.reshape(fake_scores, [-1]), tf.float32)
        decay = tf.where(self.g_steps > 0, LECAM_DECAY, 0.0)
        for kind, scores in (("real", real_scores), ("fake", fake_scores)):
            ema = self.lecam_ema[kind]
            ema.assign(decay * ema + (1.0 - decay) * tf.stop_gradient(tf.reduce_mean(scores)))
        ema_real, ema_fake = (tf.convert_to_tensor(self.lecam_ema[k]) for k in ("real", "fake"))
        return tf.square(real_scores - ema_fake) + tf.square(fake_scores - ema_real)


def r1_penalty(critic, real):
    """Per-example ||grad_x D(x)||^2 on real images, in float32 (Mescheder et al. 2018).

    critic: images -> scores [B] or [B, 1], with no batch coupling, so d(sum)/dx_b is sample b's
    gradient. Taken inside D's tape, its gradient by D's weights is a true second derivative.
    """
    real = tf.cast(real, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = tf.reduce_sum(tf.cast(critic(real), tf.float32))
    grads = tf.cast(tape.gradient(total, real), tf.float32)
    return tf.reduce_sum(tf.square(grads), axis=[1, 2, 3])

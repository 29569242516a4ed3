"""The augmenters the GAN loop holds (--augment none / diffaugment / ada): Keras layers around the
pure ops of gans/augment.py, with the seed stream and, for ADA, the probability p and its update."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ganaug.errors import UserError
from keras_ganaug.gans.augment import (
    ADA_SPEED_IMAGES,
    DIFFAUGMENT_POLICY,
    ada_augment,
    ada_update,
    diff_augment,
    parse_policy,
)
from keras_ganaug.gans.registry import AUGMENT_KINDS


@keras.saving.register_keras_serializable(package="keras_ganaug")
class NoAugment(keras.layers.Layer):
    """The augmenter interface, doing nothing: `__call__(images, training)`, `update`, `p`."""

    def __init__(self, seed: int | keras.random.SeedGenerator | None = None, **kwargs):
        # Keep the caller's dtype (bfloat16 under mixed precision) instead of autocasting.
        super().__init__(autocast=False, **kwargs)
        self.seed = seed if isinstance(seed, int) else None
        self.seed_generator = (seed if isinstance(seed, keras.random.SeedGenerator)
                               else keras.random.SeedGenerator(seed))
        self.built = True  # no weights depend on the input shape

    def call(self, images: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.augment(images) if training else images

    def augment(self, images: tf.Tensor) -> tf.Tensor:
        return images

    def update(self, real_logits: tf.Tensor) -> None:
        """Feed D's outputs on (augmented) reals after a D step; only ADA uses them."""
        return None

    @property
    def p(self) -> tf.Tensor | None:
        """The current augmentation probability (ADA only), for logging."""
        return None

    def compute_output_shape(self, input_shape):
        return input_shape

    def save_own_variables(self, store) -> None:
        """Weights plus the seed state (Keras skips it), so a resumed run draws what it would have."""
        for index, weight in enumerate(self.weights):
            store[str(index)] = weight
        store["seed_state"] = self.seed_generator.state

    def load_own_variables(self, store) -> None:
        for index, weight in enumerate(self.weights):
            weight.assign(store[str(index)])
        if "seed_state" in store.keys():
            self.seed_generator.state.assign(store["seed_state"])

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_ganaug")
class DiffAugment(NoAugment):
    """DiffAugment with a fixed policy on every image."""

    def __init__(self, policy: str = DIFFAUGMENT_POLICY,
                 seed: int | keras.random.SeedGenerator | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        parse_policy(policy)
        self.policy = policy

    def augment(self, images: tf.Tensor) -> tf.Tensor:
        return diff_augment(images, self.policy, self.seed_generator)

    def get_config(self) -> dict:
        return {**super().get_config(), "policy": self.policy}


@keras.saving.register_keras_serializable(package="keras_ganaug")
class AdaAugment(NoAugment):
    """ADA: augments with probability p and adapts p every `interval` D steps toward `target`.

    p and the sign accumulators are non-trainable weights, so model.save_weights / load_weights
    (and checkpoints) carry them across a resume.
    """

    def __init__(self, target: float = 0.6, speed_images: float = ADA_SPEED_IMAGES,
                 interval: int = 4,
                 initial_p: float = 0.0, seed: int | keras.random.SeedGenerator | None = None,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 < target < 1.0:
            raise UserError(f"ADA target: expected a number between 0 and 1, got {target}")
        if speed_images <= 0 or interval < 1:
            raise UserError(f"ADA speed: expected speed_images > 0 and interval >= 1, got "
                            f"{speed_images} and {interval}")
        self.target, self.speed_images, self.interval = target, speed_images, interval
        self.initial_p = initial_p

        # Every replica computes identical values (update() all-reduces first), so "first
        # replica" aggregation keeps the mirrored copies equal under tf.distribute.
        def state(name: str, value: float) -> keras.Variable:
            return self.add_weight(shape=(), dtype="float32", trainable=False, name=name,
                                   initializer=keras.initializers.Constant(value),
                                   aggregation="only_first_replica")

        self.probability = state("p", initial_p)
        self.sign_sum = state("real_sign_sum", 0.0)
        self.sign_count = state("real_count", 0.0)
        self.batches = state("batches_since_update", 0.0)

    def augment(self, images: tf.Tensor) -> tf.Tensor:
        return ada_augment(images, self.probability, self.seed_generator)

    def update(self, real_logits: tf.Tensor) -> None:
        """Accumulate sign(D(real)); every `interval` calls, move p (see `ada_update`)."""
        signs = tf.sign(tf.cast(real_logits, tf.float32))
        totals = tf.stack([tf.reduce_sum(signs), tf.cast(tf.size(signs), tf.float32)])
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            totals = context.all_reduce("sum", totals)
        sign_sum = self.sign_sum + totals[0]
        count = self.sign_count + totals[1]
        batches = self.batches + 1.0
        due = batches >= self.interval
        rt = sign_sum / tf.maximum(count, 1.0)
        new_p = ada_update(self.probability, rt, count, self.target, self.speed_images)
        self.probability.assign(tf.where(due, new_p, self.probability))
        self.sign_sum.assign(tf.where(due, 0.0, sign_sum))
        self.sign_count.assign(tf.where(due, 0.0, count))
        self.batches.assign(tf.where(due, 0.0, batches))

    @property
    def p(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.probability)

    def get_config(self) -> dict:
        return {**super().get_config(), "target": self.target, "speed_images": self.speed_images,
                "interval": self.interval, "initial_p": self.initial_p}


_AUGMENTERS = {"none": NoAugment, "diffaugment": DiffAugment, "ada": AdaAugment}


def make_augmenter(kind: str, seed: int | keras.random.SeedGenerator | None = None,
                   **options) -> NoAugment:
    """The `--augment` choice as a layer: "none", "diffaugment" (options: policy) or "ada"
    (options: target, speed_images, interval, initial_p)."""
    if kind not in _AUGMENTERS:
        raise UserError(f"--augment: expected one of {', '.join(AUGMENT_KINDS)}, got {kind!r}")
    return _AUGMENTERS[kind](seed=seed, name=f"augment_{kind}", **options)

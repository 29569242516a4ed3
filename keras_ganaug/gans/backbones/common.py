"""What every backbone's networks share: the sizes they support, the minibatch-std channel and
the discriminator's outputs (score, class projection, extra heads).

The discriminator contract, for every backbone: inputs `image` [B,H,W,C] (+ `class_id` [B] int32
when conditional); outputs a dict with "score" [B,1] float32 (one logit or critic value per image,
no coupling between the samples of a batch unless a norm or mbstd that the recipe checks refuse
for penalties), every head the GAN asks for ([B,units] float32), and any named feature maps the
backbone's own loss terms read (the few-shot backbone's "features_8" / "features_16").
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_ganaug.errors import UserError

SUPPORTED_SIZES = (32, 64, 128, 256)
MAX_FILTERS = 512


def check_image_size(image_size: int) -> int:
    """The number of 2x up/down-sampling stages between 4x4 and `image_size`."""
    if image_size not in SUPPORTED_SIZES:
        raise UserError(f"--image-size {image_size}: the GAN networks support "
                        f"{', '.join(map(str, SUPPORTED_SIZES))} px")
    return int(math.log2(image_size)) - 2


@keras.saving.register_keras_serializable(package="keras_ganaug")
class MinibatchStdDev(layers.Layer):
    """[B,H,W,C] -> [B,H,W,C+1]: appends the batch's standard deviation, averaged over features
    and positions, as one constant channel (Karras et al. 2018, ProGAN). A generator that makes
    much the same image for every latent gives a batch with a small value, which D can tell
    from a real batch's: a cheap signal against mode collapse. Over the whole (per-replica)
    batch rather than groups of 4, so any batch size works; D sees its real and fake batches in
    separate passes, so the statistic is of one kind of image."""

    def call(self, x):
        x32 = keras.ops.cast(x, "float32")
        std = keras.ops.sqrt(keras.ops.var(x32, axis=0) + 1e-8)  # [H,W,C]: over the batch
        plane = keras.ops.ones_like(x32[..., :1]) * keras.ops.mean(std)
        return keras.ops.concatenate([x, keras.ops.cast(plane, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class SpectralNormalization(layers.SpectralNormalization):
    """keras.layers.SpectralNormalization that leaves a frozen layer as it is: Keras' own writes
    W / sigma(W) into the kernel on every training call, trainable or not, so a FreezeD block
    wrapped in it would still change."""

    def call(self, inputs, training=False):
        return super().call(inputs, training=training and self.trainable)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class ClassAffine(layers.Layer):
    """[x, latent] -> x * gain[class] + bias[class]: batch norm's affine step with one gain and one
    bias per class, the class read off the last `classes` entries of the generator's input (the
    conditional GANs' one-hot vector). Gains start at 1 and biases at 0, as batch norm's."""

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes

    def build(self, input_shapes):
        channels = input_shapes[0][-1]
        self.gain = self.add_weight(shape=(self.classes, channels), initializer="ones", name="gain")
        self.bias = self.add_weight(shape=(self.classes, channels), initializer="zeros",
                                    name="bias")

    def call(self, inputs):
        x, latent = inputs
        one_hot = latent[:, -self.classes:]
        broadcast = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
        gain = keras.ops.reshape(keras.ops.matmul(one_hot, self.gain), broadcast)
        bias = keras.ops.reshape(keras.ops.matmul(one_hot, self.bias), broadcast)
        return x * gain + bias

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def class_conditional(batch_norm, latent, classes: int):
    """The generator's batch norm, or with `classes` its class-conditional form (de Vries et al.
    2017; BigGAN's generator): one shared trunk whose norms have no affine step of their own but
    a ClassAffine, so a minority of a few images uses the majority's filters and differs by a
    gain and a bias per channel. Called as batch_norm is: norm(name=...)(x)."""
    if not classes:
        return batch_norm

    def norm(name: str | None = None):
        def apply(x):
            x = batch_norm(center=False, scale=False, name=name)(x)
            return ClassAffine(classes, name=f"{name}_class_affine" if name else None)([x, latent])
        return apply

    return norm


def discriminator_outputs(image, x, *, num_classes: int, heads: dict[str, int] | None,
                          mbstd: bool, spectral: bool, extra: dict | None = None,
                          name: str = "discriminator") -> keras.Model:
    """The D model from its input `image` and last feature map `x` [B,4,4,C]: the score, the class
    projection when num_classes > 0, the heads, and `extra` named outputs.

    num_classes > 0 makes it a projection discriminator (Miyato & Koyama 2018): score =
    linear(h) + <embed(y), pool(h)>, pool the sum over positions of the last feature map. It
    conditions through an inner product instead of concatenated one-hot planes, which is more
    stable with few images per class and adds few weights. mbstd: a MinibatchStdDev channel
    before the score (not the projection, which stays one sample's). heads: extra float32 dense
    outputs on the shared body (InfoGAN's Q head).
    """
    features = layers.Flatten(name="features")(MinibatchStdDev(name="minibatch_std")(x)
                                               if mbstd else x)
    if spectral:
        score = SpectralNormalization(layers.Dense(1, dtype="float32"), dtype="float32",
                                      name="score")(features)
    else:
        score = layers.Dense(1, dtype="float32", name="score")(features)
    inputs = [image]
    if num_classes:
        class_id = keras.Input((), dtype="int32", name="class_id")
        inputs.append(class_id)
        # The inner product is with the features summed over positions, Miyato & Koyama's
        # phi(x): an embedding of the flattened 4x4xC map had 16x the weights per class and tied
        # each class to positions in the image. A sum, not a mean: on the red/blue test set a
        # mean conditioned 0 of 4 seeds in 160 steps, the sum 4 of 4 (as the flattened map did).
        pooled = layers.GlobalAveragePooling2D()(x)
        pooled = layers.Rescaling(float(x.shape[1] * x.shape[2]), name="pooled_features")(pooled)
        embedded = layers.Embedding(num_classes, pooled.shape[-1], name="class_embedding")(class_id)
        projection = layers.Dot(axes=1, dtype="float32", name="projection")([embedded, pooled])
        score = layers.Add(dtype="float32")([score, projection])
    outputs = {"score": score}
    for head_name, units in (heads or {}).items():
        h = layers.Dense(128)(features)
        h = layers.LeakyReLU(0.2)(h)
        outputs[head_name] = layers.Dense(units, dtype="float32", name=head_name)(h)
    outputs.update(extra or {})
    return keras.Model(inputs if num_classes else image, outputs, name=name)

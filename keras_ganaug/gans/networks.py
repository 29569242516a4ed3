"""Generator and discriminator builders that scale with image size (32-256 px) and channels.

DCGAN-style (Radford et al. 2016): the generator upsamples a 4x4 map by strided transposed
convolutions, halving filters each time; the discriminator mirrors it with strided convolutions.
Outputs that feed losses (tanh image, D score, heads) are float32 even under mixed precision.
Convolutions and batch norm come from fast_layers (Keras layers with faster training kernels on
CPU); fast_layers=False builds the stock Keras layers instead, for the bench's reference.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_ganaug.errors import UserError
from keras_ganaug.gans import fast_layers as fast
from keras_ganaug.gans.registry import D_NORMS, UPSAMPLE_KINDS

SUPPORTED_SIZES = (32, 64, 128, 256)
MAX_FILTERS = 512


def check_image_size(image_size: int) -> int:
    """The number of 2x up/down-sampling stages between 4x4 and `image_size`."""
    if image_size not in SUPPORTED_SIZES:
        raise UserError(f"--image-size {image_size}: the GAN networks support "
                        f"{', '.join(map(str, SUPPORTED_SIZES))} px")
    return int(math.log2(image_size)) - 2


def _filters(width: int, stage: int) -> int:
    return min(width * 2**stage, MAX_FILTERS)


def _layer_kinds(fast_layers: bool):
    if fast_layers:
        return fast.Conv2D, fast.Conv2DTranspose, fast.BatchNormalization
    return layers.Conv2D, layers.Conv2DTranspose, layers.BatchNormalization


def _upsampler(upsample: str, conv, conv_transpose):
    """A 2x upsampling stage: filters -> layer. "transpose" is DCGAN's strided transposed 4x4 conv;
    "resize" is nearest-neighbour 2x then a 3x3 conv, which cannot make the checkerboard
    artifacts of overlapping transposed-conv strides (Odena et al. 2016)."""
    if upsample not in UPSAMPLE_KINDS:
        raise UserError(f"--upsample {upsample}: expected one of {', '.join(UPSAMPLE_KINDS)}")
    if upsample == "transpose":
        return lambda filters, **kw: conv_transpose(filters, 4, strides=2, padding="same", **kw)

    def stage(filters, **kw):
        # Two layers of the functional graph (not a nested model, which export could not clone).
        convolve = conv(filters, 3, padding="same", **kw)
        return lambda x: convolve(layers.UpSampling2D(2, interpolation="nearest")(x))

    return stage


def build_generator(image_size: int, channels: int, input_dim: int, width: int = 64,
                    name: str = "generator", fast_layers: bool = True,
                    upsample: str = "transpose") -> keras.Model:
    """input vector [B, input_dim] -> image [B, size, size, channels] in [-1, 1]."""
    stages = check_image_size(image_size)
    conv, conv_transpose, batch_norm = _layer_kinds(fast_layers)
    up = _upsampler(upsample, conv, conv_transpose)
    noise = keras.Input((input_dim,), name="latent")
    top = _filters(width, stages - 1)
    x = layers.Dense(4 * 4 * top, use_bias=False)(noise)
    x = batch_norm()(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((4, 4, top))(x)
    for stage in reversed(range(stages - 1)):
        x = up(_filters(width, stage), use_bias=False)(x)
        x = batch_norm()(x)
        x = layers.ReLU()(x)
    x = up(channels)(x)
    image = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(noise, image, name=name)


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


def build_discriminator(image_size: int, channels: int, width: int = 64, norm: str | None = "batch",
                        num_classes: int = 0, heads: dict[str, int] | None = None,
                        name: str = "discriminator", fast_layers: bool = True,
                        mbstd: bool = False) -> keras.Model:
    """image [B,H,W,C] (+ class id [B] when num_classes) -> {"score": [B,1], head: [B,units]...}.

    norm: "batch" (DCGAN), "layer" (WGAN-GP: a per-sample norm keeps the gradient penalty valid,
    since batch norm couples the samples of a batch), "spectral" (Miyato et al. 2018: every conv
    and the score dense wrapped in keras.layers.SpectralNormalization, no batch norm; the stock
    Keras layers inside, as the wrapper must see a plain kernel) or "none" / None.
    num_classes > 0 makes it a projection discriminator (Miyato & Koyama 2018): score =
    linear(h) + <embed(y), pool(h)>, pool the sum over positions of the last feature map. It conditions through an inner product instead of concatenated
    one-hot planes, which is more stable with few images per class and adds few weights.
    heads: extra float32 dense outputs on the shared body (InfoGAN's Q head).
    mbstd: a MinibatchStdDev channel on the last feature map, before the score (not the
    projection, which stays one sample's).
    """
    stages = check_image_size(image_size)
    norm = norm or "none"
    if norm not in D_NORMS:
        raise UserError(f"--d-norm {norm}: expected one of {', '.join(D_NORMS)}")
    conv, _, batch_norm = _layer_kinds(fast_layers)
    if norm == "spectral":
        def conv(*args, **kwargs):
            return layers.SpectralNormalization(layers.Conv2D(*args, **kwargs))
    image = keras.Input((image_size, image_size, channels), name="image")
    x = conv(width, 4, strides=2, padding="same")(image)
    x = layers.LeakyReLU(0.2)(x)
    for stage in range(1, stages):
        x = conv(_filters(width, stage), 4, strides=2, padding="same",
                 use_bias=norm in ("none", "spectral"))(x)
        if norm == "batch":
            x = batch_norm()(x)
        elif norm == "layer":
            x = layers.LayerNormalization(axis=[1, 2, 3])(x)
        x = layers.LeakyReLU(0.2)(x)
    features = layers.Flatten(name="features")(MinibatchStdDev(name="minibatch_std")(x)
                                               if mbstd else x)
    if norm == "spectral":
        score = layers.SpectralNormalization(layers.Dense(1, dtype="float32"), dtype="float32",
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
    return keras.Model(inputs if num_classes else image, outputs, name=name)

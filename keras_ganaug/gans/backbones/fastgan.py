"""The few-shot backbone, after FastGAN (Liu et al. 2021), scaled to 32-256 px and a CPU budget.

Generator: z -> dense 4x4 map -> 2x stages of nearest-neighbour upsampling and a 3x3 convolution
(no transposed convolution, so no checkerboard), noise injection, batch norm and a gated linear
unit; the 8x8 and 16x16 stages take two convolutions. Skip-layer excitation (SLE) gates the
channels of each map of 32 px and up by the map 8 times smaller (4x4 -> 32x32, 8x8 -> 64x64...):
a cheap long path from the coarse layout to the fine texture.

Discriminator: a 4x4 strided stem, then residual down-blocks (strided conv path + average-pool and
1x1 shortcut), with a per-sample norm (spectral by default; never batch norm, so R1 and WGAN-GP's
penalty stay one sample's gradient), and the shared score / projection / heads. Its 8x8 and 16x16
maps are outputs too: the self-supervised decoders (build_auxiliary) rebuild the real image D saw
from the 8x8 map and a random quadrant of it from the 16x16 one, with an L1 loss on the real
batch only (FastGAN adds LPIPS, a pretrained network this package cannot download).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from keras_ganaug.gans import fast_layers as fast
from keras_ganaug.gans.backbones.common import (
    MAX_FILTERS,
    SpectralNormalization,
    check_image_size,
    class_conditional,
    discriminator_outputs,
)
from keras_ganaug.gans.registry import INTERPOLATION

DECODED_SIZE = 32  # the decoders' output side: the real targets are resized to it
DECODER_WIDTH = 64
# Stages (by side) that take two convolutions: where the layout forms, cheap at these sizes.
TWO_CONV_SIDES = (8, 16)


def _channels(width: int, image_size: int, side: int) -> int:
    """Channels of the generator's and discriminator's maps of `side` px: width/2 at full size,
    doubling per halving, capped."""
    return max(8, min((width // 2) * (image_size // side), MAX_FILTERS))


@keras.saving.register_keras_serializable(package="keras_ganaug")
class GatedLinearUnit(layers.Layer):
    """[..., 2C] -> [..., C]: a * sigmoid(b), the halves of the channels (Dauphin et al. 2017)."""

    def call(self, x):
        a, b = keras.ops.split(x, 2, axis=-1)
        return a * keras.ops.sigmoid(b)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class NoiseInjection(layers.Layer):
    """x + w * noise, one noise value per position shared by the channels, w a learned scalar
    starting at 0 (FastGAN, after StyleGAN). Training draws new noise each step from the layer's
    seed stream; inference adds one fixed noise map drawn at build (StyleGAN2's "const" noise
    mode), so an exported generator gives the same images for the same seed."""

    def build(self, input_shape):
        self.strength = self.add_weight(shape=(), initializer="zeros", name="strength")
        self.fixed_noise = self.add_weight(shape=(*input_shape[1:3], 1), trainable=False,
                                           # unit normal, as in training: Keras's
                                           # "random_normal" draws std 0.05, which exported
                                           # generators with 1/20 of the noise they learned on
                                           initializer=keras.initializers.RandomNormal(stddev=1.0),
                                           name="fixed_noise")
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, x, training=None):
        if training:
            noise = keras.random.normal((keras.ops.shape(x)[0], *x.shape[1:3], 1),
                                        seed=self.seed_generator)
        else:
            noise = keras.ops.expand_dims(self.fixed_noise, 0)
        return x + keras.ops.cast(self.strength * noise, x.dtype)


@keras.saving.register_keras_serializable(package="keras_ganaug")
class SkipLayerExcitation(layers.Layer):
    """[low [B,h,w,C1], high [B,H,W,C2]] -> high * gate(low): gate [B,1,1,C2] in (0, 1) from the
    low map average-pooled to 4x4, a 4x4 convolution to 1x1, LeakyReLU(0.1), a 1x1 convolution
    and a sigmoid (FastGAN's SLE). The gate is per image and channel: the coarse map decides
    which fine channels speak."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.squeeze = layers.Conv2D(channels, 4, padding="valid", name="squeeze")
        self.excite = layers.Conv2D(channels, 1, name="excite")

    def build(self, input_shapes):
        low_shape = input_shapes[0]
        pooled = (low_shape[0], 4, 4, low_shape[3])
        self.squeeze.build(pooled)
        self.excite.build((low_shape[0], 1, 1, self.channels))

    def gate(self, low):
        pool = low.shape[1] // 4
        pooled = keras.ops.average_pool(low, pool, pool) if pool > 1 else low
        hidden = keras.ops.leaky_relu(self.squeeze(pooled), negative_slope=0.1)
        return keras.ops.sigmoid(self.excite(hidden))

    def call(self, inputs):
        low, high = inputs
        return high * keras.ops.cast(self.gate(low), high.dtype)

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _up_stage(x, channels: int, convs: int, upsample: str, batch_norm, prefix: str):
    """One 2x generator stage: upsample, then `convs` x (conv to 2C, noise, batch norm, GLU)."""
    if upsample == "transpose":  # the ablation: strided transposed 4x4 conv, as DCGAN
        x = fast.Conv2DTranspose(2 * channels, 4, strides=2, padding="same", use_bias=False,
                                 name=f"{prefix}_up")(x)
    else:
        x = layers.UpSampling2D(2, interpolation=INTERPOLATION[upsample], name=f"{prefix}_up")(x)
        x = fast.Conv2D(2 * channels, 3, padding="same", use_bias=False, name=f"{prefix}_conv0")(x)
    for index in range(convs):
        if index:
            x = fast.Conv2D(2 * channels, 3, padding="same", use_bias=False,
                            name=f"{prefix}_conv{index}")(x)
        x = NoiseInjection(name=f"{prefix}_noise{index}")(x)
        x = batch_norm(name=f"{prefix}_bn{index}")(x)
        x = GatedLinearUnit(name=f"{prefix}_glu{index}")(x)
    return x


def build_generator(image_size: int, channels: int, input_dim: int, width: int = 64,
                    name: str = "generator", fast_layers: bool = True,
                    upsample: str = "resize", excitation: bool = True,
                    class_columns: int = 0) -> keras.Model:
    """latent [B, input_dim] -> image [B, size, size, channels] in [-1, 1]. class_columns:
    the input's last entries are a one-hot class that every batch norm reads (class_conditional)."""
    check_image_size(image_size)
    batch_norm = fast.BatchNormalization if fast_layers else layers.BatchNormalization
    latent = keras.Input((input_dim,), name="latent")
    batch_norm = class_conditional(batch_norm, latent, class_columns)
    top = _channels(width, image_size, 4)
    x = layers.Dense(4 * 4 * 2 * top, use_bias=False, name="g_init_dense")(latent)
    x = layers.Reshape((4, 4, 2 * top))(x)
    x = batch_norm(name="g_init_bn")(x)
    maps = {4: GatedLinearUnit(name="g_init_glu")(x)}
    for side in (2 ** k for k in range(3, int(math.log2(image_size)) + 1)):
        x = _up_stage(maps[side // 2], _channels(width, image_size, side),
                      2 if side in TWO_CONV_SIDES else 1, upsample, batch_norm, f"g{side}")
        if excitation and side >= 32:
            x = SkipLayerExcitation(x.shape[-1], name=f"g{side}_sle")([maps[side // 8], x])
        maps[side] = x
    x = layers.Conv2D(channels, 3, padding="same", name="g_to_image")(maps[image_size])
    image = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(latent, image, name=name)


def _conv(norm: str):
    """A conv layer maker for the discriminator's norm: spectral wraps the stock Conv2D."""
    if norm == "spectral":
        return lambda *a, name=None, **k: SpectralNormalization(layers.Conv2D(*a, **k),
                                                                       name=name)
    return lambda *a, **k: layers.Conv2D(*a, **k)


def _normalize(x, norm: str, name: str):
    if norm == "layer":
        x = layers.LayerNormalization(axis=[1, 2, 3], name=f"{name}_ln")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_act")(x)


def _down_block(x, channels: int, norm: str, prefix: str):
    """Residual 2x down-block: (4x4/2 conv, norm, act, 3x3 conv, norm, act) averaged with
    (2x2 average pool, 1x1 conv, norm, act), as FastGAN's DownBlockComp. The two convolutions
    that feed the average have no bias: with one, TensorFlow's graph optimizer fails to fuse
    conv + bias + LeakyReLU under the gradient tape and prints an error line every run."""
    conv = _conv(norm)
    main = conv(channels, 4, strides=2, padding="same", name=f"{prefix}_conv0")(x)
    main = _normalize(main, norm, f"{prefix}_main0")
    main = conv(channels, 3, padding="same", use_bias=False, name=f"{prefix}_conv1")(main)
    main = _normalize(main, norm, f"{prefix}_main1")
    direct = layers.AveragePooling2D(2, name=f"{prefix}_pool")(x)
    direct = conv(channels, 1, use_bias=False, name=f"{prefix}_shortcut")(direct)
    direct = _normalize(direct, norm, f"{prefix}_direct")
    return layers.Average(name=f"{prefix}_out")([main, direct])


def build_discriminator(image_size: int, channels: int, width: int = 64,
                        norm: str | None = "spectral", num_classes: int = 0,
                        heads: dict[str, int] | None = None, name: str = "discriminator",
                        fast_layers: bool = True, mbstd: bool = False,
                        recon_weight: float = 1.0) -> keras.Model:
    """image [B,H,W,C] (+ class id [B]) -> {"score": [B,1], heads..., and with recon_weight the
    maps "features_8" [B,8,8,C] and "features_16" [B,16,16,C] the decoders read}.
    fast_layers: unused (the stock layers throughout: spectral norm must see a plain kernel)."""
    check_image_size(image_size)
    norm = norm or "none"
    image = keras.Input((image_size, image_size, channels), name="image")
    x = _conv(norm)(_channels(width, image_size, image_size // 2), 4, strides=2, padding="same",
                    name="d_stem")(image)
    x = layers.LeakyReLU(0.2, name="d_stem_act")(x)
    maps = {image_size // 2: x}
    side = image_size // 2
    while side > 4:
        side //= 2
        x = _down_block(x, _channels(width, image_size, side), norm, f"d{side}")
        maps[side] = x
    extra = {}
    if recon_weight:
        extra = {"features_8": layers.Identity(name="features_8")(maps[8]),
                 "features_16": layers.Identity(name="features_16")(maps[16])}
    return discriminator_outputs(image, x, num_classes=num_classes, heads=heads, mbstd=mbstd,
                                 spectral=norm == "spectral", extra=extra, name=name)


def discriminator_blocks(discriminator) -> list[list]:
    """The stem and each down-block's layers, in order, for FreezeD (the score is no block)."""
    blocks: dict[str, list] = {}
    for layer in discriminator.layers:
        prefix = layer.name.split("_")[0]
        if prefix.startswith("d") and prefix[1:].isdigit() or prefix == "d":
            blocks.setdefault(prefix, []).append(layer)
    return list(blocks.values())


def _decoder(feature_channels: int, channels: int, name: str) -> keras.Model:
    """[B,8,8,C] -> [B,32,32,channels] in [-1, 1]: two (nearest 2x, 3x3 conv, GLU) stages."""
    features = keras.Input((8, 8, feature_channels))
    x = features
    for index, filters in enumerate((DECODER_WIDTH, DECODER_WIDTH // 2)):
        x = layers.UpSampling2D(2)(x)
        x = layers.Conv2D(2 * filters, 3, padding="same", name=f"{name}_conv{index}")(x)
        x = GatedLinearUnit()(x)
    x = layers.Conv2D(channels, 3, padding="same", name=f"{name}_to_image")(x)
    return keras.Model(features, layers.Activation("tanh", dtype="float32")(x), name=name)


def build_auxiliary(image_size: int, channels: int, width: int, recon_weight: float = 1.0):
    """The self-supervised decoders, {"whole": 8x8 map -> image, "part": a quadrant of the 16x16
    map -> that quadrant}, trained with the discriminator; None without recon_weight."""
    if not recon_weight:
        return None
    return {"whole": _decoder(_channels(width, image_size, 8), channels, "decoder_whole"),
            "part": _decoder(_channels(width, image_size, 16), channels, "decoder_part")}


def quadrant(maps, index):
    """The quadrant `index` (0 top left, 1 top right, 2 bottom left, 3 bottom right) of [B,H,W,C]
    maps, chosen by a tensor: all four are cut and one gathered (no data-dependent shapes)."""
    half_h, half_w = maps.shape[1] // 2, maps.shape[2] // 2
    parts = tf.stack([maps[:, :half_h, :half_w], maps[:, :half_h, half_w:],
                      maps[:, half_h:, :half_w], maps[:, half_h:, half_w:]])
    return tf.gather(parts, index)


def reconstruction_loss(decoders: dict, features_8, features_16, real_seen, index):
    """Per-example L1 of the two decoders against the real images D saw, resized to the
    decoders' output: the whole image from the 8x8 map, quadrant `index` from the 16x16 one."""
    real = tf.cast(real_seen, tf.float32)

    def target(images):
        return tf.image.resize(images, (DECODED_SIZE, DECODED_SIZE), antialias=True)

    whole = tf.cast(decoders["whole"](features_8, training=True), tf.float32)
    part = tf.cast(decoders["part"](quadrant(features_16, index), training=True), tf.float32)
    return (tf.reduce_mean(tf.abs(whole - target(real)), axis=[1, 2, 3])
            + tf.reduce_mean(tf.abs(part - target(quadrant(real, index))), axis=[1, 2, 3]))


def auxiliary_terms(gan, step) -> dict:
    """{"recon": recon_weight x the decoders' per-example L1 on this step's real batch}: one
    random quadrant per step, drawn from the GAN's noise stream (as FastGAN draws one)."""
    if gan.decoders is None:
        return {}
    index = keras.random.randint((), 0, 4, seed=gan.seed_generator)
    loss = reconstruction_loss(gan.decoders, step.real_out["features_8"],
                               step.real_out["features_16"], step.real_seen, index)
    return {"recon": gan.recipe.recon_weight * loss}

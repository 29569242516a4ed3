"""The DCGAN backbone (Radford et al. 2016): networks that scale with image size (32-256 px).

The generator upsamples a 4x4 map by strided transposed
convolutions, halving filters each time; the discriminator mirrors it with strided convolutions.
Outputs that feed losses (tanh image, D score, heads) are float32 even under mixed precision.
Convolutions and batch norm come from fast_layers (Keras layers with faster training kernels on
CPU); fast_layers=False builds the stock Keras layers instead, for the bench's reference.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_ganaug.errors import UserError
from keras_ganaug.gans import fast_layers as fast
from keras_ganaug.gans.backbones.common import (
    MAX_FILTERS,
    SpectralNormalization,
    check_image_size,
    class_conditional,
    discriminator_outputs,
)
from keras_ganaug.gans.registry import D_NORMS, INTERPOLATION, UPSAMPLE_KINDS

# The recipe values this backbone stands for when a recipe leaves them None.
DEFAULTS = {"upsample": "transpose", "recon_weight": 0.0, "excitation": False}


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
        return lambda x: convolve(layers.UpSampling2D(2, interpolation=INTERPOLATION[upsample])(x))

    return stage


def build_generator(image_size: int, channels: int, input_dim: int, width: int = 64,
                    name: str = "generator", fast_layers: bool = True,
                    upsample: str = "transpose", class_columns: int = 0) -> keras.Model:
    """input vector [B, input_dim] -> image [B, size, size, channels] in [-1, 1]. class_columns:
    the input's last entries are a one-hot class that every batch norm reads (class_conditional)."""
    stages = check_image_size(image_size)
    conv, conv_transpose, batch_norm = _layer_kinds(fast_layers)
    up = _upsampler(upsample, conv, conv_transpose)
    noise = keras.Input((input_dim,), name="latent")
    batch_norm = class_conditional(batch_norm, noise, class_columns)
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


def build_discriminator(image_size: int, channels: int, width: int = 64, norm: str | None = "batch",
                        num_classes: int = 0, heads: dict[str, int] | None = None,
                        name: str = "discriminator", fast_layers: bool = True,
                        mbstd: bool = False) -> keras.Model:
    """image [B,H,W,C] (+ class id [B] when num_classes) -> {"score": [B,1], head: [B,units]...}.

    norm: "batch" (DCGAN), "layer" (WGAN-GP: a per-sample norm keeps the gradient penalty valid,
    since batch norm couples the samples of a batch), "spectral" (Miyato et al. 2018: every conv
    and the score dense wrapped in keras.layers.SpectralNormalization, no batch norm; the stock
    Keras layers inside, as the wrapper must see a plain kernel) or "none" / None.
    num_classes, heads, mbstd: common.discriminator_outputs.
    """
    stages = check_image_size(image_size)
    norm = norm or "none"
    if norm not in D_NORMS:
        raise UserError(f"--d-norm {norm}: expected one of {', '.join(D_NORMS)}")
    conv, _, batch_norm = _layer_kinds(fast_layers)
    if norm == "spectral":
        def conv(*args, **kwargs):
            return SpectralNormalization(layers.Conv2D(*args, **kwargs))
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
    return discriminator_outputs(image, x, num_classes=num_classes, heads=heads, mbstd=mbstd,
                                 spectral=norm == "spectral", name=name)


def discriminator_blocks(discriminator) -> list[list]:
    """The discriminator's conv blocks in order, for FreezeD: each a conv (or spectral-norm
    wrapper) and the layers after it up to the next conv (norm, activation); the score head is
    no block."""
    blocks: list[list] = []
    for layer in discriminator.layers:
        conv = isinstance(layer, keras.layers.Conv2D) or (
            isinstance(layer, keras.layers.SpectralNormalization)
            and isinstance(layer.layer, keras.layers.Conv2D))
        if conv:
            blocks.append([layer])
        elif blocks and isinstance(layer, keras.layers.Flatten):
            break
        elif blocks:
            blocks[-1].append(layer)
    return blocks


def build_auxiliary(image_size: int, channels: int, width: int) -> None:
    """No networks beside G and D."""
    return None


def auxiliary_terms(gan, step) -> dict:
    """No loss terms of its own."""
    return {}

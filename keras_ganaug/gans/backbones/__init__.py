"""The backbones: one module of networks each, the GAN's losses and loop shared by all.

A backbone module provides
    build_generator(image_size, channels, input_dim, width, name=..., upsample=..., ...)
    build_discriminator(image_size, channels, width, norm=..., num_classes=..., heads=...,
                        name=..., mbstd=..., ...)   -> the outputs of common.discriminator_outputs
    build_auxiliary(image_size, channels, width, ...) -> networks trained with D, or None
    auxiliary_terms(gan, step) -> {name: per-example D loss term} (e.g. reconstruction)
    discriminator_blocks(discriminator) -> D's blocks in order (FreezeD freezes the first K)
The recipe options a builder takes are passed by name when it declares them. Adding a backbone is
one module here and its name in registry.ARCHS (and its defaults in recipes.ARCH_DEFAULTS).
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

from keras_ganaug.errors import UserError
from keras_ganaug.gans.registry import ARCHS


def backbone(arch: str) -> ModuleType:
    """The module of backbone `arch` (imported on first use: it loads TensorFlow)."""
    if arch not in ARCHS:
        raise UserError(f"--arch {arch}: expected one of {', '.join(ARCHS)}")
    return importlib.import_module(f"keras_ganaug.gans.backbones.{arch}")


def accepts(builder, option: str) -> bool:
    """Whether `builder` declares the keyword `option` (call_with_options passes it only then)."""
    return option in inspect.signature(builder).parameters


def call_with_options(builder, *args, options: dict, **kwargs):
    """builder(*args, **kwargs, and each of `options` the builder declares)."""
    accepted = inspect.signature(builder).parameters
    return builder(*args, **kwargs, **{k: v for k, v in options.items() if k in accepted})

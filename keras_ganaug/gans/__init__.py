"""The GANs of the reference studies, by the name users type on the command line."""

from __future__ import annotations

from keras_ganaug.errors import UserError


def gan_class(name: str):
    """'dcgan' -> the DCGAN class (imported lazily: TensorFlow loads only when a GAN is wanted)."""
    from keras_ganaug.gans.dcgan import DCGAN

    registry = {"dcgan": DCGAN}
    if name not in registry:
        raise UserError(f"--gan {name}: expected one of {', '.join(sorted(registry))}")
    return registry[name]


GAN_NAMES = ("dcgan",)

"""The GANs of the reference studies, as Keras models with one shared training loop.

    from keras_ganaug.gans import DCGAN, CGAN, WGANGP, ConditionalWGANGP, InfoGAN

The classes are imported on first use, so `import keras_ganaug.gans` does not load TensorFlow;
using any of them imports and registers them all with Keras, so keras.models.load_model reads a
saved GAN of any kind. The names users type are in gans/registry.py.
"""

from __future__ import annotations

from keras_ganaug.errors import UserError
from keras_ganaug.gans.registry import CLASS_NAMES, CONDITIONAL_VARIANTS, GAN_NAMES

__all__ = [*CLASS_NAMES, "gan_class"]


def __getattr__(name: str):
    if name in CLASS_NAMES:  # anything else (submodules being imported...) is not ours to load
        return gan_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def gan_classes() -> dict:
    """Every GAN class by its Python name (importing their modules registers them with Keras)."""
    from keras_ganaug.gans.cgan import CGAN
    from keras_ganaug.gans.dcgan import DCGAN
    from keras_ganaug.gans.infogan import InfoGAN
    from keras_ganaug.gans.wgan_gp import WGANGP, ConditionalWGANGP

    return {"CGAN": CGAN, "DCGAN": DCGAN, "WGANGP": WGANGP,
            "ConditionalWGANGP": ConditionalWGANGP, "InfoGAN": InfoGAN}


def gan_class(name: str, conditional: bool = False):
    """'dcgan' -> the DCGAN class (imported lazily: TensorFlow loads only when a GAN is wanted).

    conditional=True picks the class-conditional variant ("wgan-gp"); "cgan" is conditional anyway.
    """
    if name not in GAN_NAMES:
        raise UserError(f"--gan {name}: expected one of {', '.join(GAN_NAMES)}")
    if conditional and name not in (*CONDITIONAL_VARIANTS, "cgan"):
        raise UserError(f"--conditional: --gan {name} has no conditional variant; use --gan cgan "
                        f"(a conditional DCGAN) or --gan wgan-gp --conditional")
    if name == "wgan-gp":
        return gan_classes()["ConditionalWGANGP" if conditional else "WGANGP"]
    return gan_classes()[{"dcgan": "DCGAN", "cgan": "CGAN", "infogan": "InfoGAN"}[name]]

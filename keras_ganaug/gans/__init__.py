"""The GANs of the reference studies, by the name users type on the command line and as classes.

    from keras_ganaug.gans import DCGAN, CGAN, WGANGP, ConditionalWGANGP, InfoGAN

The classes are imported on first use, so `import keras_ganaug.gans` (the CLIs read GAN_NAMES
before parsing flags) does not load TensorFlow; using any of them imports and registers them all
with Keras, so keras.models.load_model reads a saved GAN of any kind.
"""

from __future__ import annotations

from keras_ganaug.errors import UserError

GAN_NAMES = ("dcgan", "cgan", "wgan-gp", "infogan")
CONDITIONAL_VARIANTS = ("wgan-gp",)  # GANs that --conditional turns class-conditional
__all__ = ["CGAN", "DCGAN", "GAN_NAMES", "WGANGP", "ConditionalWGANGP", "InfoGAN", "gan_class"]
_CLASS_NAMES = ("CGAN", "DCGAN", "WGANGP", "ConditionalWGANGP", "InfoGAN")


def _classes() -> dict:
    """Every GAN class by its Python name (importing their modules registers them with Keras)."""
    from keras_ganaug.gans.cgan import CGAN
    from keras_ganaug.gans.dcgan import DCGAN
    from keras_ganaug.gans.infogan import InfoGAN
    from keras_ganaug.gans.wgan_gp import WGANGP, ConditionalWGANGP

    return {"CGAN": CGAN, "DCGAN": DCGAN, "WGANGP": WGANGP,
            "ConditionalWGANGP": ConditionalWGANGP, "InfoGAN": InfoGAN}


def __getattr__(name: str):
    if name in _CLASS_NAMES:  # anything else (submodules being imported...) is not ours to load
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        return _classes()["ConditionalWGANGP" if conditional else "WGANGP"]
    return _classes()[{"dcgan": "DCGAN", "cgan": "CGAN", "infogan": "InfoGAN"}[name]]

"""The GANs of the reference studies, as Keras models with one shared training loop.

    from keras_ganaug.gans import DCGAN, CGAN, WGANGP, ConditionalWGANGP, InfoGAN

The classes are imported on first use, so `import keras_ganaug.gans` does not load TensorFlow;
using any of them imports and registers them all with Keras, so keras.models.load_model reads a
saved GAN of any kind. The names users type are in gans/registry.py.
"""

from __future__ import annotations

from keras_ganaug.errors import UserError
from keras_ganaug.gans.registry import CLASS_NAMES, GAN_NAMES

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

    Each class says what it is (gan_type, conditional): conditional=True picks the class-
    conditional variant of a GAN that has both (wgan-gp); a GAN that is conditional anyway (cgan)
    is its own, asked for either way.
    """
    if name not in GAN_NAMES:
        raise UserError(f"--gan {name}: expected one of {', '.join(GAN_NAMES)}")
    classes = [c for c in gan_classes().values() if c.gan_type == name]
    chosen = ([c for c in classes if c.conditional == conditional]
              or [c for c in classes if c.conditional])
    if not chosen:
        raise UserError(f"--conditional: --gan {name} has no conditional variant; use "
                        f"{' or '.join(conditional_spellings())}")
    return chosen[0]


def conditional_spellings() -> list[str]:
    """How a user asks for each class-conditional GAN: '--gan cgan', '--gan wgan-gp --conditional'."""
    classes = gan_classes().values()
    unconditional = {c.gan_type for c in classes if not c.conditional}
    return [f"--gan {c.gan_type}" + (" --conditional" if c.gan_type in unconditional else "")
            for c in classes if c.conditional]

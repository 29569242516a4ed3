"""The GANs of the reference studies, by the name users type on the command line."""

from __future__ import annotations

from keras_ganaug.errors import UserError

GAN_NAMES = ("dcgan", "cgan", "wgan-gp", "infogan")
CONDITIONAL_VARIANTS = ("wgan-gp",)  # GANs that --conditional turns class-conditional


def gan_class(name: str, conditional: bool = False):
    """'dcgan' -> the DCGAN class (imported lazily: TensorFlow loads only when a GAN is wanted).

    conditional=True picks the class-conditional variant ("wgan-gp"); "cgan" is conditional anyway.
    """
    if name not in GAN_NAMES:
        raise UserError(f"--gan {name}: expected one of {', '.join(GAN_NAMES)}")
    if conditional and name not in (*CONDITIONAL_VARIANTS, "cgan"):
        raise UserError(f"--conditional: --gan {name} has no conditional variant; use --gan cgan "
                        f"(a conditional DCGAN) or --gan wgan-gp --conditional")
    from keras_ganaug.gans.cgan import CGAN
    from keras_ganaug.gans.dcgan import DCGAN
    from keras_ganaug.gans.infogan import InfoGAN
    from keras_ganaug.gans.wgan_gp import WGANGP, ConditionalWGANGP

    if name == "wgan-gp":
        return ConditionalWGANGP if conditional else WGANGP
    return {"dcgan": DCGAN, "cgan": CGAN, "infogan": InfoGAN}[name]

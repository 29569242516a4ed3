"""The names users type for the GAN side: the GANs, the augmentations, the recipe options.

Plain data, importable without TensorFlow (the CLIs read them before parsing flags). What a GAN
can do is its `GANKind`: the CLIs and the study ask the kind before TensorFlow loads, the GAN
classes hold it (`GAN.kind`), so nothing tests a GAN's name to learn what it takes. The class each
name stands for is keras_ganaug.gans.gan_class; whether it is conditional is asked of that class.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_ganaug.errors import UserError


@dataclass(frozen=True)
class GANKind:
    """What one GAN name stands for, as far as checks made before training need to know."""

    name: str
    options: tuple[str, ...] = ()  # GANConfig fields only this GAN takes (its constructor's)
    # An own per-sample input-gradient penalty: R1 on top is refused (one constraint of the kind
    # is enough), and so are D norms that couple the batch.
    gradient_penalty: bool = False
    # Why --augment ada is refused, or None: ADA steers p by sign(D(real)), which says "too sure
    # these are real" only for a discriminator whose logits are centred on 0.
    ada_refusal: str | None = None


GAN_KINDS = {kind.name: kind for kind in (
    GANKind("dcgan"),
    GANKind("cgan"),
    GANKind("wgan-gp", options=("n_critic", "gp_weight"), gradient_penalty=True,
            ada_refusal="its overfitting signal, the sign of D(real), means nothing for the "
                        "WGAN-GP critic, whose scores have no fixed centre"),
    GANKind("infogan", options=("cat_codes", "cont_codes")),
)}
GAN_NAMES = tuple(GAN_KINDS)
# train_gan.py's GAN: conditional transfer from the other classes. At N = 100 (skin malignant,
# 64 px, 65 kimg, seeds 0-2) cgan is the only generator measured that meets the generator issue's
# bounds (C2ST .838, KID .020 at these defaults, against .987 / .081 for DCGAN on the minority
# alone); below 100, on fastgan (--recipe auto), it keeps recall .44 at N = 10 and .72 at
# N = 50 (seed 0). docs/results/gan_recipes/README.md, "Conditional transfer".
DEFAULT_GAN = "cgan"
# Each GAN-specific option and the GAN that takes it (a flag of another GAN is an error).
GAN_OPTIONS = {option: kind.name for kind in GAN_KINDS.values() for option in kind.options}


def gan_kind(name: str) -> GANKind:
    """The kind a GAN name stands for; a name no GAN has gets an unregistered kind that takes
    nothing special (a user's own GAN subclass)."""
    return GAN_KINDS.get(name) or GANKind(name)


AUGMENT_KINDS = ("none", "diffaugment", "ada")  # --augment: see gans/augmenters.py
CLASS_NAMES = ("CGAN", "DCGAN", "WGANGP", "ConditionalWGANGP", "InfoGAN")
# The recipe options (gans/recipes.Recipe): how the networks are built, what the loop adds to the
# losses. --arch: the backbones, each a module of networks in gans/backbones/.
ARCHS = ("dcgan", "fastgan")
ADVERSARIAL_LOSSES = ("logistic", "hinge")  # --loss of the GANs with a logistic loss
# --upsample: strided transposed conv, or a 2x resize (nearest-neighbour or bilinear) + 3x3 conv
UPSAMPLE_KINDS = ("transpose", "resize", "bilinear")
INTERPOLATION = {"resize": "nearest", "bilinear": "bilinear"}  # the resize of each resize kind
D_NORMS = ("batch", "layer", "spectral", "none")  # --d-norm (default: the GAN's own)
G_FAKES = ("reused", "fresh")  # --g-fakes: the G step judges the D step's fakes, or new ones
# D norms that couple the samples of a batch: a per-sample input gradient (R1, WGAN-GP's penalty)
# taken through them is not one sample's gradient, so those penalties refuse them.
BATCH_COUPLED_NORMS = ("batch",)


DIFFAUGMENT_OPS = ("color", "translation", "cutout")
DIFFAUGMENT_POLICY = ",".join(DIFFAUGMENT_OPS)


def parse_policy(policy: str) -> list[str]:
    """'color,translation' -> ['color', 'translation']; '' -> []; unknown names are a UserError."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in DIFFAUGMENT_OPS]
    if unknown:
        raise UserError(f"DiffAugment policy: expected a comma-separated subset of "
                        f"{DIFFAUGMENT_POLICY}, got {policy!r}")
    return names

"""The names users type for the GAN side: the GANs, the augmentations, the recipe options.

Plain lists, importable without TensorFlow (the CLIs read them before parsing flags); the class
each GAN name stands for is keras_ganaug.gans.gan_class, and whether a GAN is conditional is
asked of that class (its `conditional` attribute), never read off its name.
"""

from __future__ import annotations

GAN_NAMES = ("dcgan", "cgan", "wgan-gp", "infogan")
AUGMENT_KINDS = ("none", "diffaugment", "ada")  # --augment: see gans/augmenters.py
# GANs that refuse --augment ada, and why: ADA steers p by sign(D(real)), which says "too sure
# these are real" only for a discriminator whose logits are centred on 0.
ADA_REFUSED = {"wgan-gp": "its overfitting signal, the sign of D(real), means nothing for the "
                          "WGAN-GP critic, whose scores have no fixed centre"}
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
# GANs with their own per-sample input-gradient penalty: R1 on top is refused (one constraint of
# the kind is enough), and so are D norms that couple the batch.
GRADIENT_PENALTY_GANS = ("wgan-gp",)

"""The names users type for the GAN side: the GANs, their conditional variants, the augmentations.

Plain lists, importable without TensorFlow (the CLIs read them before parsing flags); the class
each GAN name stands for is keras_ganaug.gans.gan_class.
"""

from __future__ import annotations

GAN_NAMES = ("dcgan", "cgan", "wgan-gp", "infogan")
CONDITIONAL_VARIANTS = ("wgan-gp",)  # GANs that --conditional turns class-conditional
AUGMENT_KINDS = ("none", "diffaugment", "ada")  # --augment: see gans/augment.py
# GANs that refuse --augment ada, and why: ADA steers p by sign(D(real)), which says "too sure
# these are real" only for a discriminator whose logits are centred on 0.
ADA_REFUSED = {"wgan-gp": "its overfitting signal, the sign of D(real), means nothing for the "
                          "WGAN-GP critic, whose scores have no fixed centre"}
CLASS_NAMES = ("CGAN", "DCGAN", "WGANGP", "ConditionalWGANGP", "InfoGAN")

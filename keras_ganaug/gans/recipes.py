"""The recipe spec and the named recipes: how a GAN's networks are built and what the loop adds
to its losses.

`Recipe` is the one owner of the recipe options: the GAN holds one (frozen), train_gan.py's flags,
GANConfig's recipe fields, the --resume keys and the checks are read off its fields, so a new
option is a field here and its GANConfig field. A named recipe sets GANConfig fields among
RECIPE_FIELDS; a field given explicitly (a flag, or a GANConfig value other than None) wins over the
recipe, and a field neither sets keeps TODAY's value. Plain data, importable without TensorFlow:
the CLI reads the names for `choices=` before parsing flags.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace

from keras_ganaug.errors import UserError
from keras_ganaug.gans.registry import (
    ADVERSARIAL_LOSSES,
    ARCHS,
    BATCH_COUPLED_NORMS,
    D_NORMS,
    G_FAKES,
    UPSAMPLE_KINDS,
    gan_kind,
    parse_policy,
)


def _option(default, help: str, **flag):
    """A Recipe field and the train_gan.py flag it becomes (argparse keywords in `flag`)."""
    return field(default=default, metadata={"help": help, **flag})


@dataclass(frozen=True)
class Recipe:
    """The options of a GAN's networks and losses. None: the backbone's value (ARCH_DEFAULTS),
    and for d_norm under the DCGAN backbone the GAN's own (batch; layer for WGAN-GP)."""

    arch: str = _option("dcgan", "networks: dcgan (strided / transposed convolutions) or fastgan "
                        "(few-shot: resize-conv, GLU, skip-layer excitation, noise; residual D "
                        "with self-supervised decoders)", choices=ARCHS)
    upsample: str | None = _option(None, "generator 2x stages: transpose (strided transposed "
                                   "conv; dcgan's), resize (nearest 2x + 3x3 conv; fastgan's) or "
                                   "bilinear (bilinear 2x + 3x3 conv)", choices=UPSAMPLE_KINDS)
    d_norm: str | None = _option(None, "discriminator normalization (dcgan: the GAN's own, batch; "
                                 "layer for wgan-gp; fastgan: spectral)", choices=D_NORMS)
    r1_gamma: float = _option(0.0, "R1 penalty gamma/2 ||grad D(x_real)||^2 (default 0: off; "
                              "not wgan-gp, not with --d-norm batch)", type=float)
    lecam_weight: float = _option(0.0, "LeCam regularization weight (Tseng et al. 2021; "
                                  "default 0: off)", type=float)
    g_lr: float | None = _option(None, "generator learning rate (default: the GAN's)", type=float)
    d_lr: float | None = _option(None, "discriminator learning rate (default: the GAN's)",
                                 type=float)
    g_fakes: str = _option("reused", "generator step on the last D step's fakes (reused, "
                           "default) or on fresh ones drawn after the D update", choices=G_FAKES)
    diffaugment_policy: str | None = _option(None, "with --augment diffaugment: a subset of "
                                             "color,translation,cutout (default all three)")
    mbstd: bool = _option(False, "a minibatch standard-deviation channel in the discriminator "
                          "(Karras et al. 2018); not with R1 or wgan-gp",
                          action=argparse.BooleanOptionalAction)
    loss: str = _option("logistic", "adversarial loss of dcgan, cgan and infogan: logistic "
                        "(non-saturating, default) or hinge", choices=ADVERSARIAL_LOSSES)
    recon_weight: float | None = _option(None, "weight of the fastgan discriminator's "
                                         "self-supervised reconstruction loss (fastgan 1; 0 "
                                         "drops the decoders)", type=float)
    excitation: bool | None = _option(None, "fastgan's skip-layer excitation (default on)",
                                      action=argparse.BooleanOptionalAction)
    class_norm: bool = _option(False, "conditional GANs (cgan, wgan-gp --conditional): "
                               "class-conditional batch norm in the generator, a gain and a bias "
                               "per class on one shared trunk (default off: the class enters "
                               "with z only)", action=argparse.BooleanOptionalAction)

    def resolved(self, gan_d_norm: str) -> Recipe:
        """Every None replaced: the backbone's value, else (d_norm) the GAN's own."""
        if self.arch not in ARCHS:
            raise UserError(f"--arch {self.arch}: expected one of {', '.join(ARCHS)}")
        values = {k: v for k, v in ARCH_DEFAULTS[self.arch].items() if getattr(self, k) is None}
        if (self.d_norm or values.get("d_norm")) is None:
            values["d_norm"] = gan_d_norm
        return replace(self, **values)

    def check(self, gan_type: str, augment: str, conditional: bool | None = None) -> None:
        """Refuse options that cannot work, one line naming the flag. Call on a resolved recipe
        for the checks that need the norm; an unresolved d_norm None passes them, and so does
        class_norm when whether the GAN is conditional is not known yet (None)."""
        for ok, message in self._checks(gan_type, augment, conditional):
            if not ok:
                raise UserError(message)

    def _checks(self, gan_type: str, augment: str,
                conditional: bool | None) -> list[tuple[bool, str]]:
        penalised = ("--r1-gamma" if self.r1_gamma
                     else f"--gan {gan_type}'s gradient penalty")
        own_penalty = gan_kind(gan_type).gradient_penalty
        per_sample = bool(self.r1_gamma or own_penalty)
        checks = [(getattr(self, name) is None or getattr(self, name) in choices,
                   f"--{name.replace('_', '-')} {getattr(self, name)}: expected one of "
                   f"{', '.join(choices)}")
                  for name, choices in (("arch", ARCHS), ("upsample", UPSAMPLE_KINDS),
                                        ("d_norm", D_NORMS), ("g_fakes", G_FAKES),
                                        ("loss", ADVERSARIAL_LOSSES))]
        checks += [
            (self.r1_gamma >= 0, f"--r1-gamma {self.r1_gamma}: expected 0 (off) or more"),
            (not self.class_norm or conditional is not False,
             f"--class-norm: the generator of a conditional GAN (cgan, wgan-gp --conditional) "
             f"only, not --gan {gan_type}'s"),
            (self.lecam_weight >= 0,
             f"--lecam-weight {self.lecam_weight}: expected 0 (off) or more"),
            (self.g_lr is None or self.g_lr > 0,
             f"--g-lr {self.g_lr}: expected a learning rate above 0"),
            (self.d_lr is None or self.d_lr > 0,
             f"--d-lr {self.d_lr}: expected a learning rate above 0"),
            (self.diffaugment_policy is None or augment == "diffaugment",
             f"--diffaugment-policy: applies to --augment diffaugment, not --augment {augment}"),
            (not self.r1_gamma or not own_penalty,
             f"--r1-gamma: --gan {gan_type} has its own gradient penalty (--gp-weight); R1 is "
             f"for the GANs with a logistic loss"),
            # A per-sample input gradient taken through batch norm in training mode is not one
            # sample's: d sum_j D(x_j) / dx_i picks up every x_j through the batch statistics.
            # Evaluating D in inference mode instead would penalise another function than the
            # one trained, so the combination is refused rather than approximated.
            (self.d_norm not in BATCH_COUPLED_NORMS or not per_sample,
             f"--d-norm {self.d_norm}: batch norm couples the samples of a batch, so the "
             f"per-sample input gradient of {penalised} is not one sample's; use --d-norm "
             f"spectral, layer or none"),
            # The same coupling, through the batch's standard deviation.
            (not self.mbstd or not per_sample,
             f"--mbstd: the batch's standard deviation couples its samples, so the per-sample "
             f"input gradient of {penalised} is not one sample's"),
            (self.loss == "logistic" or not own_penalty,
             f"--loss {self.loss}: --gan {gan_type} has its own (Wasserstein) loss"),
            (self.recon_weight is None or self.recon_weight >= 0,
             f"--recon-weight {self.recon_weight}: expected 0 (off) or more"),
            (self.arch == "fastgan" or not (self.recon_weight or self.excitation),
             f"--recon-weight / --excitation: the fastgan backbone's, not --arch {self.arch}'s"),
            (self.arch != "fastgan" or self.d_norm not in BATCH_COUPLED_NORMS,
             f"--d-norm {self.d_norm}: the fastgan discriminator keeps its samples apart; use "
             f"spectral, layer or none"),
        ]
        if self.diffaugment_policy is not None:
            checks.append((bool(parse_policy(self.diffaugment_policy)),
                           "--diffaugment-policy: expected at least one of "
                           "color,translation,cutout"))
        return checks


RECIPE_OPTIONS = tuple(f.name for f in fields(Recipe))  # what the GAN constructor takes
# What each backbone stands for where a recipe leaves a value None (d_norm None under dcgan:
# the GAN's own).
ARCH_DEFAULTS = {
    "dcgan": {"upsample": "transpose", "recon_weight": 0.0, "excitation": False},
    "fastgan": {"upsample": "resize", "d_norm": "spectral", "recon_weight": 1.0,
                "excitation": True},
}
# Today's values of every field a recipe may set: the Recipe's own, the networks' width and
# augmentation, and FreezeD's block count (a transfer option the run, not the GAN, applies).
TODAY = {"width": 64, "augment": "none", **asdict(Recipe()), "freeze_d_blocks": 0}
RECIPE_FIELDS = tuple(TODAY)

# The candidates. Values follow the papers' small-data settings scaled to DCGAN-sized nets:
# TTUR's 1:4 rates as in SAGAN (Zhang et al. 2019); LeCam's weight of the order Tseng et al.
# use with DiffAugment; R1's gamma 1 for images in [-1, 1] (Mescheder et al. use 10 at 256 px
# on large sets; StyleGAN2-ADA's heuristic gives ~0.01 at 64 px: the search should bracket it).
# Width 32: at 64 it trains at a quarter of the DCGAN's images per second on 2 CPU cores, at 32
# about the same (measured 2026-12-04, in the stage-3 notes of docs/results/gan_recipes).
FASTGAN = {"arch": "fastgan", "width": 32, "augment": "diffaugment",
           "diffaugment_policy": "color,translation"}
RECIPES: dict[str, dict] = {
    "today": {},
    "diffaugment": {"augment": "diffaugment"},
    # StyleGAN2-ADA's adaptive augmentation (gans/augmenters.AdaAugment): p moves by images shown.
    "ada": {"augment": "ada"},
    # Resize + conv upsampling alone (Odena et al. 2016: no checkerboard), the D unchanged, so
    # the upsampling is compared without spectral norm's effect mixed in.
    "resize": {"upsample": "resize"},
    "sn-resize": {"d_norm": "spectral", "upsample": "resize"},
    "sn-resize-lecam": {"d_norm": "spectral", "upsample": "resize", "lecam_weight": 0.1},
    "sn-resize-lecam-da": {"d_norm": "spectral", "upsample": "resize", "lecam_weight": 0.1,
                           "augment": "diffaugment"},
    "r1-lecam": {"d_norm": "none", "r1_gamma": 1.0, "lecam_weight": 0.1},
    "ttur": {"g_lr": 1e-4, "d_lr": 4e-4},
    "fresh-fakes": {"g_fakes": "fresh"},
    # Minibatch standard deviation (Karras et al. 2018): D sees how much the batch varies, so a
    # generator that draws one background for every latent is told apart from the real images.
    "mbstd": {"mbstd": True},
    # With resize upsampling, the lowest C2ST of stage 1 (no checkerboard for the C2ST to see).
    "mbstd-resize": {"mbstd": True, "upsample": "resize"},
    # DiffAugment without cutout: on the demo's 48 images the default's D memorizes the set
    # within ~100 steps and every fake gets one background; with cutout, G copies its square
    # holes (docs/results/gan_recipes/README.md, stage 4). The demo job's recipe.
    "diffaugment-ct": {"augment": "diffaugment", "diffaugment_policy": "color,translation"},
    "wide": {"width": 128},
    # The few-shot backbone (gans/backbones/fastgan.py) with DiffAugment colour + translation, as
    # FastGAN trains, and its ablations: no decoders, no skip-layer excitation, transposed
    # upsampling, the hinge loss FastGAN uses.
    "fastgan": FASTGAN,
    "fastgan-no-decoders": {**FASTGAN, "recon_weight": 0.0},
    "fastgan-no-excitation": {**FASTGAN, "excitation": False},
    "fastgan-transpose": {**FASTGAN, "upsample": "transpose"},
    "fastgan-hinge": {**FASTGAN, "loss": "hinge"},
    # Stage 3 variants: bilinear upsampling (the nearest-neighbour fakes showed a 2-px dot
    # texture), and DiffAugment translation only (with colour, every fake came out pink).
    "fastgan-bilinear": {**FASTGAN, "upsample": "bilinear"},
    "fastgan-translation": {**FASTGAN, "diffaugment_policy": "translation"},
    # Needs --init-from RUN (bench/gan_recipes.py pretrains on --pretrain-class): FreezeD keeps
    # the first two of D's conv blocks, the low-level features Mo et al. find transfer best.
    "transfer-freezed": {"freeze_d_blocks": 2},
}
RECIPE_NAMES = tuple(RECIPES)
# The default: the recipe for the run's N (the class's real images before the validation split,
# --n-real or every train image of the class), read off stage 3 of docs/results/gan_recipes
# (skin malignant, 64 px, 65 kimg, means over seeds 0-2). Below 100 the fastgan backbone keeps
# variety where today's DCGAN collapses (recall .29 against .03 at N = 10, .63 against .23 at
# N = 50) and is detected less (C2ST .97 and .94 against 1.00); from 200 today's DCGAN meets the
# issue's bounds (C2ST .86, KID .021) and fastgan does not (one seed: .95, .27). At 100 neither
# wins (fastgan's C2ST .94 against .99, today's KID .08 against .19), so the tie goes to the
# cheaper network (7.5 against 11.5 minutes on 2 CPU cores). The same rule holds for a GAN that
# learns every class (cgan, the default --gan): on seed 0, cgan on fastgan against cgan on today's
# networks has C2ST .930 against .966 and recall .72 against .55 at N = 50, a tie at N = 10
# (.982 / .44 against .983 / .45); today's has the lower KID (.152 against .267 at N = 50).
AUTO_RECIPE = "auto"
FEWSHOT_RECIPE, FEWSHOT_BELOW_N, MANY_SHOT_RECIPE = "fastgan", 100, "today"
DEFAULT_RECIPE = AUTO_RECIPE
RECIPE_CHOICES = (AUTO_RECIPE, *RECIPE_NAMES)  # what --recipe takes


def recipe_for_n(name: str, n_real: int) -> str:
    """The named recipe a run of `n_real` real images trains with: `name`, or for AUTO_RECIPE
    the one stage 3 of the recipe search found best at that N."""
    if name != AUTO_RECIPE:
        return name
    return FEWSHOT_RECIPE if n_real < FEWSHOT_BELOW_N else MANY_SHOT_RECIPE
# The budget when neither --kimg nor --epochs is given, in images shown so that it means the same
# for every N. The recipe search (docs/results/gan_recipes, skin malignant, 64 px) trained this
# recipe for 65 and 150 kimg at N = 10, 100 and 500: 150 was better only at N = 500 and far
# worse at N = 10 (the discriminator overfits the few images), so the default is the shorter,
# about 5 minutes on 2 CPU cores.
DEFAULT_KIMG = 65.0


def budget_kimg(config) -> float | None:
    """A GANConfig's budget in kimg: its kimg, else DEFAULT_KIMG unless epochs sets the budget
    in passes over the images (None)."""
    if config.kimg is not None:
        return config.kimg
    return None if config.epochs is not None else DEFAULT_KIMG


def recipe_values(name: str, given: dict | None = None) -> dict:
    """Every RECIPE_FIELDS value of recipe `name`, with the non-None values of `given` on top."""
    if name == AUTO_RECIPE:  # a programming slip, not a user's: the run's N picks the recipe
        raise ValueError(f"recipe {AUTO_RECIPE!r}: choose it by N first (recipe_for_n)")
    if name not in RECIPES:
        raise UserError(f"--recipe {name}: expected one of {', '.join(RECIPE_NAMES)}")
    explicit = {k: v for k, v in (given or {}).items() if k in RECIPE_FIELDS and v is not None}
    values = {**TODAY, **RECIPES[name], **explicit}
    if values["augment"] != "diffaugment" and "diffaugment_policy" not in explicit:
        # A recipe's DiffAugment policy goes with its DiffAugment: --augment none (or ada) on
        # top of fastgan's recipe is that recipe without augmentation, not an error.
        values["diffaugment_policy"] = TODAY["diffaugment_policy"]
    return values


def resolve_recipe(config):
    """A GANConfig with every recipe field set: its own value, else its recipe's, else today's,
    and the backbone's defaults for what that leaves None (d_norm None: the GAN's own)."""
    values = recipe_values(config.recipe, {k: getattr(config, k) for k in RECIPE_FIELDS})
    arch = values["arch"]
    if arch in ARCH_DEFAULTS:  # an unknown one is Recipe.check's to refuse
        values.update({k: v for k, v in ARCH_DEFAULTS[arch].items() if values[k] is None})
    return replace(config, **values)


def config_recipe(config) -> Recipe:
    """The Recipe of a (resolved) GANConfig."""
    return Recipe(**{name: getattr(config, name) for name in RECIPE_OPTIONS})

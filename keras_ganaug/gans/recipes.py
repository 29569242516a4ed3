"""Named GAN recipes: bundles of the recipe options, the candidates bench/gan_recipes.py ranks.

A recipe sets GANConfig fields among RECIPE_FIELDS; a field given explicitly (a flag, or a
GANConfig value other than None) wins over the recipe, and a field neither sets keeps TODAY's
value. `today` sets nothing: the package's defaults, which stay the default until a search
(issue 15) has shown a better recipe on the study's data. Plain data, importable without
TensorFlow: the CLI reads the names for `choices=` before parsing flags.
"""

from __future__ import annotations

from dataclasses import replace

from keras_ganaug.errors import UserError
from keras_ganaug.gans.registry import (
    BATCH_COUPLED_NORMS,
    D_NORMS,
    G_FAKES,
    GRADIENT_PENALTY_GANS,
    UPSAMPLE_KINDS,
)

# Today's values of every field a recipe may set. None: d_norm the GAN's own (batch; layer for
# WGAN-GP), learning rates the GAN's default_learning_rate, the full DiffAugment policy.
TODAY = {"width": 64, "augment": "none", "upsample": "transpose", "d_norm": None,
         "r1_gamma": 0.0, "lecam_weight": 0.0, "g_lr": None, "d_lr": None, "g_fakes": "reused",
         "diffaugment_policy": None, "freeze_d_blocks": 0, "mbstd": False}
RECIPE_FIELDS = tuple(TODAY)
# Recipe fields the GAN constructor takes under the same name (width and augment it takes anyway).
RECIPE_OPTIONS = ("upsample", "d_norm", "r1_gamma", "lecam_weight", "g_lr", "d_lr", "g_fakes",
                  "diffaugment_policy", "mbstd")

# The candidates. Values follow the papers' small-data settings scaled to DCGAN-sized nets:
# TTUR's 1:4 rates as in SAGAN (Zhang et al. 2019); LeCam's weight of the order Tseng et al.
# use with DiffAugment; R1's gamma 1 for images in [-1, 1] (Mescheder et al. use 10 at 256 px
# on large sets; StyleGAN2-ADA's heuristic gives ~0.01 at 64 px: the search should bracket it).
RECIPES: dict[str, dict] = {
    "today": {},
    "diffaugment": {"augment": "diffaugment"},
    # StyleGAN2-ADA's adaptive augmentation (gans/augment.AdaAugment): p moves by images shown.
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
    # Needs --init-from RUN (bench/gan_recipes.py pretrains on --pretrain-class): FreezeD keeps
    # the first two of D's conv blocks, the low-level features Mo et al. find transfer best.
    "transfer-freezed": {"freeze_d_blocks": 2},
}
RECIPE_NAMES = tuple(RECIPES)
DEFAULT_RECIPE = "today"
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
    if name not in RECIPES:
        raise UserError(f"--recipe {name}: expected one of {', '.join(RECIPE_NAMES)}")
    explicit = {k: v for k, v in (given or {}).items() if k in RECIPE_FIELDS and v is not None}
    return {**TODAY, **RECIPES[name], **explicit}


def resolve_recipe(config):
    """A GANConfig with every recipe field set: its own value, else its recipe's, else today's."""
    return replace(config, **recipe_values(config.recipe,
                                           {k: getattr(config, k) for k in RECIPE_FIELDS}))


def check_recipe_options(gan_type: str, augment: str, upsample: str, d_norm: str | None,
                         r1_gamma: float, lecam_weight: float, g_lr: float | None,
                         d_lr: float | None, g_fakes: str, diffaugment_policy: str | None,
                         mbstd: bool = False) -> None:
    """Refuse recipe options that cannot work, one line naming the flag. d_norm None: the GAN's
    own (then the batch-norm check is the GAN constructor's, which knows that norm)."""
    penalised = "--r1-gamma" if r1_gamma else f"--gan {gan_type}'s gradient penalty"
    checks = [
        (upsample in UPSAMPLE_KINDS,
         f"--upsample {upsample}: expected one of {', '.join(UPSAMPLE_KINDS)}"),
        (d_norm is None or d_norm in D_NORMS,
         f"--d-norm {d_norm}: expected one of {', '.join(D_NORMS)}"),
        (r1_gamma >= 0, f"--r1-gamma {r1_gamma}: expected 0 (off) or more"),
        (lecam_weight >= 0, f"--lecam-weight {lecam_weight}: expected 0 (off) or more"),
        (g_lr is None or g_lr > 0, f"--g-lr {g_lr}: expected a learning rate above 0"),
        (d_lr is None or d_lr > 0, f"--d-lr {d_lr}: expected a learning rate above 0"),
        (g_fakes in G_FAKES, f"--g-fakes {g_fakes}: expected one of {', '.join(G_FAKES)}"),
        (diffaugment_policy is None or augment == "diffaugment",
         f"--diffaugment-policy: applies to --augment diffaugment, not --augment {augment}"),
        (not r1_gamma or gan_type not in GRADIENT_PENALTY_GANS,
         f"--r1-gamma: --gan {gan_type} has its own gradient penalty (--gp-weight); R1 is for "
         f"the GANs with a logistic loss"),
        # A per-sample input gradient taken through batch norm in training mode is not one
        # sample's: d sum_j D(x_j) / dx_i picks up every x_j through the batch statistics.
        # Evaluating D in inference mode instead would penalise another function than the one
        # trained, so the combination is refused rather than approximated.
        (d_norm not in BATCH_COUPLED_NORMS or not (r1_gamma or gan_type in GRADIENT_PENALTY_GANS),
         f"--d-norm {d_norm}: batch norm couples the samples of a batch, so the per-sample input "
         f"gradient of {penalised} is not one sample's; use --d-norm spectral, layer or none"),
        # The same coupling, through the batch's standard deviation.
        (not mbstd or not (r1_gamma or gan_type in GRADIENT_PENALTY_GANS),
         f"--mbstd: the batch's standard deviation couples its samples, so the per-sample input "
         f"gradient of {penalised} is not one sample's"),
    ]
    if diffaugment_policy is not None:
        from keras_ganaug.gans.augment import parse_policy  # TensorFlow: only when asked

        checks.append((bool(parse_policy(diffaugment_policy)),
                       "--diffaugment-policy: expected at least one of color,translation,cutout"))
    for ok, message in checks:
        if not ok:
            raise UserError(message)

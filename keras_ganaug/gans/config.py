"""A GAN run's settings: GANConfig, their checks, and the keys --resume compares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from keras_ganaug.data.images import DEFAULT_VAL_FRACTION, ImageSet, list_images
from keras_ganaug.errors import UserError
from keras_ganaug.gans.recipes import (
    AUTO_RECIPE,
    DEFAULT_RECIPE,
    RECIPE_FIELDS,
    config_recipe,
    recipe_for_n,
    resolve_recipe,
)
from keras_ganaug.gans.registry import DEFAULT_GAN

FINISHED_MARKER = "metadata.json"  # written last by export: its presence means a finished run

# Flags that must match for --resume to continue a run rather than start a different one: the
# data, the cut, the GAN and its networks (every recipe field), the batches and the precision.
RESUME_KEYS = ("data", "class_name", "gan", "n_real", "image_size", "channels", "latent_dim",
               "seed", "ema", "resize", "batch_size", "conditional", "cat_codes", "cont_codes",
               "n_critic", "gp_weight", "precision", "val_fraction", "drop_test_duplicates",
               "init_from", *RECIPE_FIELDS)


@dataclass
class GANConfig:
    data: str | None = None  # image-folder root or tfds:NAME; None = the built-in demo set
    class_name: str | None = None  # None = the class with the fewest train images
    gan: str = DEFAULT_GAN
    conditional: bool = False  # the class-conditional variant (wgan-gp); cgan always is
    n_real: int | None = None  # None = every image of the class
    image_size: int = 64
    channels: int = 3
    epochs: int | None = None  # passes over the images; None: the kimg budget
    # The budget in thousands of real images shown to the discriminator (StyleGAN2-ADA's unit);
    # when set it replaces `epochs`, and batches keep `batch_size` whatever the set's size, so
    # every N gets the same number of updates. None: `epochs` passes over the images, or
    # DEFAULT_KIMG when epochs is None too (budget_kimg).
    kimg: float | None = None
    batch_size: int = 64
    # The fraction of each class held out as the classifier's validation split (images.split_validation):
    # the same files train_classifier.py validates on for the same --n-real and --seed.
    val_fraction: float = DEFAULT_VAL_FRACTION
    drop_test_duplicates: bool = False  # leave out training images byte-identical to a test image
    latent_dim: int = 128
    # The recipe (gans/recipes.py) and its fields: None = the recipe's value, others win over it.
    # "auto" (the default): the recipe for the run's N, chosen by choose_recipe below.
    recipe: str = DEFAULT_RECIPE
    width: int | None = None  # today 64
    augment: str | None = None  # today "none"
    arch: str | None = None  # the backbone: dcgan (today) or fastgan
    upsample: str | None = None  # the backbone's: transpose (dcgan) or resize (fastgan)
    d_norm: str | None = None  # dcgan: the GAN's own, batch (layer for WGAN-GP); fastgan: spectral
    r1_gamma: float | None = None  # R1 weight gamma on real images; 0 (today) = off
    lecam_weight: float | None = None  # LeCam regularization weight; 0 (today) = off
    g_lr: float | None = None  # today the GAN's default_learning_rate
    d_lr: float | None = None
    g_fakes: str | None = None  # reused (today) or fresh
    diffaugment_policy: str | None = None  # today color,translation,cutout
    mbstd: bool | None = None  # a minibatch standard-deviation channel in D; today off
    loss: str | None = None  # logistic (today) or hinge, for the GANs with a logistic loss
    recon_weight: float | None = None  # fastgan's decoder loss weight (its default 1; dcgan 0)
    excitation: bool | None = None  # fastgan's skip-layer excitation (its default on)
    class_norm: bool | None = None  # conditional GANs: class-conditional G batch norm; today off
    init_from: str | None = None  # an earlier run to start the networks from (gans/transfer.py)
    freeze_d_blocks: int | None = None  # with init_from: D's first conv blocks kept (FreezeD)
    ema: float | None = 0.999
    seed: int = 0
    out: str | None = None
    sample_every: int | None = None  # None = about ten grids per run
    snapshot_every: int = 0
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: at epoch ends only)
    # Without checkpoint_every: epoch-end checkpoints at most this often (0: every epoch end).
    checkpoint_seconds: float = 60.0
    resize: str = "crop"
    skip_bad_images: bool = False
    overwrite: bool = False
    resume: bool = False
    verbose: int = 1
    cat_codes: int = 4  # InfoGAN: values of its categorical code
    cont_codes: int = 2  # InfoGAN: continuous codes
    n_critic: int = 5  # WGAN-GP: critic steps per generator step
    gp_weight: float = 10.0  # WGAN-GP: gradient penalty weight (lambda)
    precision: str = "auto"  # auto, float32, mixed_bfloat16 or mixed_float16 (see runtime.py)
    strategy: str = "auto"  # auto, mirrored or multiworker (TF_CONFIG)
    steps_per_execution: int = 1


def train_listing(config: GANConfig) -> tuple[str, ImageSet, str]:
    """(--data as read, its train listing, the class the run trains on)."""
    from keras_ganaug.data.demo import make_demo_data  # writes data/demo on first use

    source = str(make_demo_data()) if config.data is None else config.data
    images = list_images(source, "train")
    class_name = config.class_name or images.fewest_class()
    if class_name not in images.class_names:
        raise UserError(f"--class {class_name}: not a class of {images.source}; classes are "
                        f"{', '.join(images.class_names)}")
    return source, images, class_name


def choose_recipe(config: GANConfig) -> GANConfig:
    """`config` with --recipe auto replaced by the recipe for its N (recipes.recipe_for_n): its
    --n-real, else every train image of its class. Reads the folder listing, not the images."""
    if config.recipe != AUTO_RECIPE:
        return config
    n_real = config.n_real
    if n_real is None:
        _, images, class_name = train_listing(config)
        n_real = images.counts()[class_name]
    return replace(config, recipe=recipe_for_n(config.recipe, n_real))


def check_config(config: GANConfig, given: tuple[str, ...] = ()) -> None:
    """Refuse settings that cannot work, before any data is read or TensorFlow loads.

    `given` names the GAN_OPTIONS the user set (the CLI knows; the dataclass holds defaults), so
    an option meant for another GAN is an error rather than silently ignored.
    """
    from keras_ganaug import runtime
    from keras_ganaug.gans.registry import GAN_NAMES, GAN_OPTIONS, gan_kind
    if config.gan not in GAN_NAMES:
        raise UserError(f"--gan {config.gan}: expected one of {', '.join(GAN_NAMES)}")
    config = resolve_recipe(choose_recipe(config))
    config_recipe(config).check(config.gan, config.augment)
    for option in given:
        if GAN_OPTIONS[option] != config.gan:
            raise UserError(f"--{option.replace('_', '-')}: applies to --gan {GAN_OPTIONS[option]} "
                            f"only, not --gan {config.gan}")
    checks = [
        (config.augment != "ada" or not gan_kind(config.gan).ada_refusal,
         f"--augment ada: {gan_kind(config.gan).ada_refusal}; use --augment diffaugment with "
         f"--gan {config.gan}"),
        (config.ema is None or 0 < config.ema < 1,
         f"--ema {config.ema}: expected a decay in [0, 1), e.g. 0.999, or 0 for off"),
        (config.precision in runtime.PRECISION_CHOICES, f"--precision {config.precision}: "
         f"expected one of {', '.join(runtime.PRECISION_CHOICES)}"),
        (config.strategy in runtime.STRATEGY_CHOICES, f"--strategy {config.strategy}: "
         f"expected one of {', '.join(runtime.STRATEGY_CHOICES)}"),
        (config.epochs is None or config.kimg is None,
         "--epochs and --kimg: give one (--kimg sets the budget in images shown)"),
        (config.kimg is None or config.kimg > 0,
         f"--kimg {config.kimg}: expected a positive number of thousands of images"),
        (config.snapshot_every >= 0,
         f"--snapshot-every {config.snapshot_every}: expected 0 (off) or more"),
        (config.checkpoint_every >= 0,
         f"--checkpoint-every {config.checkpoint_every}: expected 0 (off) or more"),
        (config.freeze_d_blocks >= 0 and (config.init_from or not config.freeze_d_blocks),
         f"--freeze-d-blocks {config.freeze_d_blocks} (--recipe {config.recipe}): expected 0 or "
         f"more, and --init-from RUN to take the frozen blocks from"),
        (config.checkpoint_seconds >= 0,
         f"--checkpoint-seconds {config.checkpoint_seconds}: expected 0 (every epoch) or more"),
        (config.gp_weight >= 0, f"--gp-weight {config.gp_weight}: expected 0 or more (default 10)"),
        (config.cat_codes >= 2, f"--cat-codes {config.cat_codes}: expected 2 or more (default 4)"),
        (config.cont_codes >= 0,
         f"--cont-codes {config.cont_codes}: expected 0 or more (default 2)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def default_out(config: GANConfig, class_name: str) -> Path:
    n = "all" if config.n_real is None else str(config.n_real)
    return Path("saved_models") / f"{config.gan}_{class_name}_n{n}"


def config_defaults() -> dict:
    """What an older run_config.json lacks stands for: today's settings (older runs predate
    --recipe auto, so a missing recipe is today's)."""
    return asdict(resolve_recipe(GANConfig(recipe="today")))



"""A classifier run's settings: the dataclass the CLI and the study fill, its checks
(`resolve`), and the grammar of --synthetic (how many extra images each class gets).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from keras_ganaug import runtime
from keras_ganaug.classify.models import TRANSFER_MODELS
from keras_ganaug.classify.selection import DEFAULT_MIN_EPOCHS, DEFAULT_MONITOR
from keras_ganaug.data.images import DEFAULT_VAL_FRACTION
from keras_ganaug.errors import UserError

METRICS_FILE = "metrics.json"




BACKUP_DIR = "backup"  # per-epoch state for --resume, removed once the run has finished


# Settings that must match for --resume to continue a run rather than start a different one.
RESUME_KEYS = ("data", "minority", "n_real", "model", "weights", "freeze", "fine_tune", "augment",
               "superpixel_p", "superpixel_segments", "generators", "synthetic", "vet",
               "vet_keep", "upscale", "class_weights", "val_fraction", "batch_size",
               "learning_rate", "image_size", "channels", "resize", "seed", "skip_bad_images",
               "precision", "oversample", "synthetic_classes", "monitor", "min_epochs",
               "drop_test_duplicates")


SYNTHETIC_CLASSES = ("minority", "all")


@dataclass
class ClassifierConfig:
    """Every setting of one classifier run; the fields mirror train_classifier.py's flags."""

    data: str = "demo"
    minority: str | None = None          # None: the class with the fewest train images
    n_real: int | None = None            # cut the minority's train images to N (None: keep all)
    model: str = "cnn5"                  # simple-cnn | cnn5 | vgg16 | resnet50
    weights: str | None = None           # imagenet | none | PATH; None: imagenet for transfer models
    freeze: bool = False                 # transfer models: train the new head only
    fine_tune: int | None = None         # transfer models: train only the backbone's last K layers
    augment: str = "none"                # none | classic | superpixel | classic+superpixel
    superpixel_p: float = 0.5            # probability that one SLIC segment is replaced
    superpixel_segments: int = 64        # SLIC segments per image
    generators: list[str] = field(default_factory=list)  # SavedModel exports of train_gan.py
    synthetic: str | None = None         # balance | COUNT | REAL:SYNTHETIC | P%; None: balance
    oversample: bool = False             # repeat real images instead of generating (the non-GAN twin)
    synthetic_classes: str = "minority"  # minority | all: every class gets the same share of extras
    vet: bool = False                    # keep only the fakes the discriminator finds most real
    vet_keep: float = 0.5                # the fraction of generated fakes kept when vetting
    upscale: str = "bicubic"             # bicubic | PATH of a super-resolution SavedModel
    class_weights: bool = False          # sklearn "balanced" class weights in the loss
    val_fraction: float = DEFAULT_VAL_FRACTION
    epochs: int = 30
    patience: int = 5
    monitor: str = DEFAULT_MONITOR       # val_auc | val_balanced_loss | val_loss (selection.py)
    min_epochs: int = DEFAULT_MIN_EPOCHS  # epochs before early stopping may pick or stop
    drop_test_duplicates: bool = False   # score without test images byte-identical to trained ones
    batch_size: int = 32
    learning_rate: float | None = None   # None: 1e-3 for the small CNNs, 1e-4 for transfer models
    image_size: int = 64
    channels: int = 3
    resize: str = "crop"                 # crop | pad: how non-square images are made square
    seed: int = 0
    out: str | None = None               # None: runs/<model>-<minority>-n<N>-<synthetic>-s<seed>
    overwrite: bool = False
    skip_bad_images: bool = False
    resume: bool = False                 # continue the interrupted run in `out`
    # float32 by default, not auto: the scores a study reports should not depend on the machine,
    # and bfloat16 trains the study's cnn5 only ~1.1x faster on the bench's CPU (simple-cnn
    # 1.55x, vgg16 1.7x, resnet50 1.1x; bench/RESULTS.md).
    precision: str = "float32"           # auto | float32 | mixed_bfloat16 | mixed_float16
    strategy: str = "auto"               # auto | mirrored | multiworker (TF_CONFIG)


def parse_synthetic(spec: str) -> tuple[str, int | Fraction | None]:
    """"balance" | "COUNT" | "REAL:SYNTHETIC" | "P%" -> ("balance", None) | ("count", n) |
    ("ratio", s/r) | ("share", P/100)."""
    text = spec.strip()
    if text == "balance":
        return "balance", None
    if text.isdigit():
        return "count", int(text)
    if text.endswith("%") and text[:-1].replace(".", "", 1).isdigit() and 0 < float(text[:-1]) <= 1000:
        return "share", Fraction(text[:-1]) / 100
    parts = text.split(":")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts) and min(map(int, parts)) > 0:
        return "ratio", Fraction(int(parts[1]), int(parts[0]))
    raise UserError(f"--synthetic {spec}: expected balance, a count like 200, a real:synthetic "
                    f"ratio like 1:2, or a share of the real training split like 20%")


def synthetic_label(spec: str) -> str:
    """A --synthetic value as it can stand in a file name: 1:2 -> 1to2, 20% -> 20pct."""
    return spec.replace(":", "to").replace("%", "pct")


def synthetic_count(spec: str, real_counts: dict[str, int], class_name: str) -> int:
    """How many extra images of `class_name` --synthetic asks for, given the real train counts.

    balance fills the class up to the largest class; 1:2 adds twice as many as the class has real
    training images; 20% adds 20% of the whole real training split. Counts are of the training
    split, after validation was taken out.
    """
    kind, value = parse_synthetic(spec)
    if kind == "balance":
        return max(0, max(real_counts.values()) - real_counts[class_name])
    if kind == "count":
        return int(value)
    if kind == "share":
        return int(round(sum(real_counts.values()) * value))
    return int(round(real_counts[class_name] * value))


def extra_counts(spec: str, real_counts: dict[str, int], minority: str,
                 classes: str) -> dict[str, int]:
    """Extra (synthetic or oversampled) images per class: the one rule GAN fakes and oversampling
    both go through, so a GAN method and its non-GAN twin add the same numbers.

    classes "minority": only the minority gets `synthetic_count`; "all": every other class gets the
    same share of extras per real image as the minority, so "looks generated" predicts no label.
    """
    minority_extra = synthetic_count(spec, real_counts, minority)
    if classes == "minority":
        return {minority: minority_extra}
    share = Fraction(minority_extra, max(1, real_counts[minority]))
    return {name: minority_extra if name == minority else int(round(count * share))
            for name, count in real_counts.items()}


def split_evenly(total: int, parts: int) -> list[int]:
    """total -> `parts` counts differing by at most one (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def resolve(config: ClassifierConfig) -> ClassifierConfig:
    """Check every setting a user can get wrong and fill in the defaults that depend on others.

    The checks run in a fixed order (model, augmentation, extra images, training, runtime), so
    of two wrong settings the same one is always named.
    """
    from keras_ganaug.classify.selection import check_monitor

    weights = _resolve_weights(config)
    _check_augment(config)
    synthetic = _resolve_synthetic(config)
    check_monitor(config.monitor)
    _check_synthesis(config)
    _check_training(config)
    _check_runtime(config)
    out = config.out or str(Path("runs") / _run_name(config, synthetic))
    return replace(config, weights=weights, synthetic=synthetic, out=out,
                   generators=[str(g) for g in config.generators])


def _resolve_weights(config: ClassifierConfig) -> str:
    """--model and its --weights / --freeze / --fine-tune -> the weights (imagenet for transfer
    models unless given, none for the small CNNs)."""
    models = ("simple-cnn", "cnn5", *TRANSFER_MODELS)
    if config.model not in models:
        raise UserError(f"--model {config.model}: expected one of {', '.join(models)}")
    weights = config.weights or ("imagenet" if config.model in TRANSFER_MODELS else "none")
    if config.model not in TRANSFER_MODELS and (weights != "none" or config.freeze
                                                or config.fine_tune is not None):
        raise UserError(f"--weights / --freeze / --fine-tune apply to vgg16 and resnet50; "
                        f"{config.model} always trains from scratch")
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise UserError(f"--weights {weights}: no such file (expected imagenet, none or a "
                        f"weights file of {config.model} without its top)")
    if config.freeze and config.fine_tune is not None:
        raise UserError("--freeze and --fine-tune: pick one (--freeze trains the head only)")
    if config.fine_tune is not None and config.fine_tune < 1:
        raise UserError(f"--fine-tune {config.fine_tune}: expected a number of layers >= 1")
    if (config.freeze or config.fine_tune is not None) and weights == "none":
        raise UserError("--freeze / --fine-tune with --weights none would keep random layers "
                        "fixed; give --weights imagenet or --weights PATH")
    return weights


def _check_augment(config: ClassifierConfig) -> None:
    from keras_ganaug.classify.augment import parse_augment

    parse_augment(config.augment)
    if not 0.0 <= config.superpixel_p <= 1.0:
        raise UserError(f"--superpixel-p {config.superpixel_p}: expected a probability in [0, 1]")
    if config.superpixel_segments < 2:
        raise UserError(f"--superpixel-segments {config.superpixel_segments}: expected >= 2")


def _resolve_synthetic(config: ClassifierConfig) -> str | None:
    """--generator / --oversample / --synthetic / --vet / --synthetic-classes -> the --synthetic
    spec (balance when extra images are asked for without one; None without extra images)."""
    synthetic = config.synthetic
    for path in config.generators:
        if not Path(path).is_dir():
            raise UserError(f"--generator {path}: no such folder (expected a train_gan.py output)")
    if config.generators and config.oversample:
        raise UserError("--oversample and --generator: pick one (--oversample repeats real images "
                        "instead of generating them)")
    if config.generators or config.oversample:
        synthetic = synthetic or "balance"
        parse_synthetic(synthetic)
    elif synthetic is not None:
        raise UserError("--synthetic needs at least one --generator PATH, or --oversample")
    if config.vet and not config.generators:
        raise UserError("--vet needs at least one --generator PATH")
    if config.synthetic_classes not in SYNTHETIC_CLASSES:
        raise UserError(f"--synthetic-classes {config.synthetic_classes}: expected one of "
                        f"{', '.join(SYNTHETIC_CLASSES)}")
    return synthetic


def _check_synthesis(config: ClassifierConfig) -> None:
    """How fakes are vetted and resized."""
    if not 0.0 < config.vet_keep <= 1.0:
        raise UserError(f"--vet-keep {config.vet_keep}: expected a fraction in (0, 1]")
    if config.upscale != "bicubic" and not Path(config.upscale).is_dir():
        raise UserError(f"--upscale {config.upscale}: expected bicubic or the folder of a "
                        f"super-resolution SavedModel")


def _check_training(config: ClassifierConfig) -> None:
    """The validation split, the numbers of the fit, the image shape and the learning rate."""
    if not 0.0 < config.val_fraction < 1.0:
        raise UserError(f"--val-fraction {config.val_fraction}: expected a fraction in (0, 1)")
    for flag, value, least in (("--epochs", config.epochs, 1), ("--batch-size", config.batch_size, 1),
                               ("--image-size", config.image_size, 1),
                               ("--patience", config.patience, 0),
                               ("--min-epochs", config.min_epochs, 0)):
        if value < least:
            raise UserError(f"{flag} {value}: expected at least {least}")
    if config.channels not in (1, 3):
        raise UserError(f"--channels {config.channels}: expected 1 or 3")
    if config.learning_rate is not None and config.learning_rate <= 0:
        raise UserError(f"--learning-rate {config.learning_rate}: expected a positive number")


def _check_runtime(config: ClassifierConfig) -> None:
    if config.precision not in runtime.PRECISION_CHOICES:
        raise UserError(f"--precision {config.precision}: expected one of "
                        f"{', '.join(runtime.PRECISION_CHOICES)}")
    if config.strategy not in runtime.STRATEGY_CHOICES:
        raise UserError(f"--strategy {config.strategy}: expected one of "
                        f"{', '.join(runtime.STRATEGY_CHOICES)}")


def _run_name(config: ClassifierConfig, synthetic: str | None) -> str:
    n_real = f"n{config.n_real}" if config.n_real is not None else "all"
    extra = synthetic_label(synthetic or "real")
    extra = f"oversample-{extra}" if config.oversample else extra
    return f"{config.model}-{config.minority or 'minority'}-{n_real}-{extra}-s{config.seed}"

"""Train one classifier on real (+ synthetic) images and measure it on the untouched test split.

The order of operations is what keeps the numbers honest:
  1. list the train split; cut the minority to --n-real with data.select_real (the same files
     train_gan.py trains on for the same N and seed); load the images.
  2. split validation off the real training images with data.split_validation (stratified,
     seeded, from the file listing: the same files train_gan.py holds out for the same N, seed and
     --val-fraction), before anything synthetic exists; refuse a generator that saw any val or
     test image (by file hash).
  3. generate synthetic images (optionally vetted by the exported discriminator, resized to
     --image-size), or oversample real ones, and append them to the training split only: checked,
     not just intended.
  4. fit with early stopping on a prior-free val metric (selection.py); choose the decision
     threshold on val; evaluate the restored best weights on the test split at argmax and at that
     threshold; write OUT/metrics.json (last: it marks a finished run) and the figures.

run(ClassifierConfig(...)) is what train_classifier.py and the study grid call.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from keras_ganaug import __version__, runtime
from keras_ganaug.data import DEFAULT_VAL_FRACTION
from keras_ganaug.errors import UserError
from keras_ganaug.files import ensure_writable, finish_in, stage_replacement, write_json_atomic
from keras_ganaug.selection import DEFAULT_MIN_EPOCHS, DEFAULT_MONITOR

TRANSFER_MODELS = ("vgg16", "resnet50")
METRICS_FILE = "metrics.json"
RUN_CONFIG_FILE = "run_config.json"  # written once the data is checked: marks a started run
BACKUP_DIR = "backup"  # per-epoch state for --resume, removed once the run has finished
# Settings that must match for --resume to continue a run rather than start a different one.
RESUME_KEYS = ("data", "minority", "n_real", "model", "weights", "freeze", "fine_tune", "augment",
               "superpixel_p", "superpixel_segments", "generators", "synthetic", "vet",
               "vet_keep", "upscale", "class_weights", "val_fraction", "batch_size",
               "learning_rate", "image_size", "channels", "resize", "seed", "skip_bad_images",
               "precision", "oversample", "synthetic_classes", "monitor", "min_epochs",
               "drop_test_duplicates")
SYNTHETIC_CLASSES = ("minority", "all")
GENERATION_BATCH = 64  # images per generator call: bounds memory at 224 px
# Where keras.applications downloads its no-top ImageNet weights from, and the cached file name.
IMAGENET_WEIGHTS = {
    "vgg16": ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/",
              "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
REACHABILITY_TIMEOUT_S = 5.0


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


# --synthetic ----------------------------------------------------------------------------------

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


# Validation ---------------------------------------------------------------------------------

def resolve(config: ClassifierConfig) -> ClassifierConfig:
    """Check every setting a user can get wrong and fill in the defaults that depend on others."""
    from keras_ganaug.augment import parse_augment
    from keras_ganaug.selection import check_monitor

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
    parse_augment(config.augment)
    if not 0.0 <= config.superpixel_p <= 1.0:
        raise UserError(f"--superpixel-p {config.superpixel_p}: expected a probability in [0, 1]")
    if config.superpixel_segments < 2:
        raise UserError(f"--superpixel-segments {config.superpixel_segments}: expected >= 2")
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
    check_monitor(config.monitor)
    if not 0.0 < config.vet_keep <= 1.0:
        raise UserError(f"--vet-keep {config.vet_keep}: expected a fraction in (0, 1]")
    if config.upscale != "bicubic" and not Path(config.upscale).is_dir():
        raise UserError(f"--upscale {config.upscale}: expected bicubic or the folder of a "
                        f"super-resolution SavedModel")
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
    if config.precision not in runtime.PRECISION_CHOICES:
        raise UserError(f"--precision {config.precision}: expected one of "
                        f"{', '.join(runtime.PRECISION_CHOICES)}")
    if config.strategy not in runtime.STRATEGY_CHOICES:
        raise UserError(f"--strategy {config.strategy}: expected one of "
                        f"{', '.join(runtime.STRATEGY_CHOICES)}")
    out = config.out or str(Path("runs") / _run_name(config, synthetic))
    return replace(config, weights=weights, synthetic=synthetic, out=out,
                   generators=[str(g) for g in config.generators])


def _run_name(config: ClassifierConfig, synthetic: str | None) -> str:
    n_real = f"n{config.n_real}" if config.n_real is not None else "all"
    extra = synthetic_label(synthetic or "real")
    extra = f"oversample-{extra}" if config.oversample else extra
    return f"{config.model}-{config.minority or 'minority'}-{n_real}-{extra}-s{config.seed}"


# ImageNet weights ---------------------------------------------------------------------------

def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def check_imagenet_reachable(model_name: str) -> None:
    """Fail within seconds, with the way out, when ImageNet weights are neither cached nor reachable.

    keras.applications would otherwise try the download itself, which offline either fails with an
    unhelpful traceback or, behind a dead proxy, hangs. The probe runs in a daemon thread so even a
    DNS lookup that ignores socket timeouts cannot hold the run up longer than the timeout.
    """
    base_url, fname = IMAGENET_WEIGHTS[model_name]
    if (_keras_home() / "models" / fname).is_file():
        return
    outcome: list[str] = []

    def probe():
        try:
            request = urllib.request.Request(base_url + fname, method="HEAD")
            urllib.request.urlopen(request, timeout=REACHABILITY_TIMEOUT_S).close()
            outcome.append("")
        except (urllib.error.URLError, OSError, ValueError) as err:
            outcome.append(str(getattr(err, "reason", err)))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(REACHABILITY_TIMEOUT_S + 1.0)
    if outcome and not outcome[0]:
        return
    reason = outcome[0] if outcome else f"no answer in {REACHABILITY_TIMEOUT_S:.0f} s"
    raise UserError(imagenet_help(model_name, f"cannot download {fname} ({reason})"))


def imagenet_help(model_name: str, problem: str) -> str:
    """The one-line message for ImageNet weights that cannot be had, naming both ways out."""
    fname = IMAGENET_WEIGHTS[model_name][1]
    return (f"--weights imagenet: {problem}; use --weights none to train {model_name} from scratch, "
            f"or --weights PATH with a weights file (e.g. a copy of {fname}, which can also be "
            f"placed in {_keras_home() / 'models'})")


# Generators ---------------------------------------------------------------------------------

@dataclass
class GeneratorSource:
    """One --generator: where it is, what it makes, and which class id to ask it for."""

    path: str
    metadata: dict
    class_name: str
    class_id: int  # the id in the generator's own class list; -1 for its one trained class


def open_generator(path: str, class_names: tuple[str, ...], minority: str, channels: int,
                   classes: str = "minority") -> list[GeneratorSource]:
    """Read and check a generator export against the classifier's data and settings.

    One source per class it will be asked for: the minority (or, with classes "all", every class
    of --data it knows) for a conditional generator, its one trained class otherwise.
    """
    from keras_ganaug.export import generator_dir, load_metadata

    metadata = load_metadata(path)
    generator_dir(path)
    missing = [k for k in ("image_size", "channels", "conditional") if k not in metadata]
    if missing:
        raise UserError(f"--generator {path}: metadata lacks {', '.join(missing)}; "
                        f"not a keras-ganaug generator export")
    if int(metadata["channels"]) != channels:
        raise UserError(f"--generator {path}: makes {metadata['channels']}-channel images but "
                        f"--channels is {channels}; train the GAN with --channels {channels}")
    generator_classes = list(metadata.get("class_names") or [])
    if metadata["conditional"]:
        if minority not in generator_classes:
            raise UserError(f"--generator {path}: conditional generator knows classes "
                            f"{generator_classes}, not the minority {minority!r}")
        wanted = [minority] if classes == "minority" else [
            c for c in class_names if c in generator_classes]
        return [GeneratorSource(path, metadata, c, generator_classes.index(c)) for c in wanted]
    trained = metadata.get("trained_class")
    if isinstance(trained, int) and generator_classes:
        trained = generator_classes[trained]
    if trained not in class_names:
        raise UserError(f"--generator {path}: trained on class {trained!r}, which is not a class "
                        f"of --data ({', '.join(class_names)})")
    return [GeneratorSource(path, metadata, trained, -1)]


def make_synthetic(sources: list[GeneratorSource], class_counts: dict[str, int],
                   image_size: int, seed: int, vet: bool, vet_keep: float,
                   upscale: str) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """Synthetic images per generator -> ([(class_name, uint8 images)], provenance records).

    Each class of `class_counts` (from `extra_counts`) gets its count, split evenly over the
    generators that make that class. Generator i draws with a seed derived from (seed, i) by
    numpy's SeedSequence and recorded: reproducible, and the per-batch seeds of different
    generators never collide the way seed + i would (synthesize uses seed + batch index).
    """
    from keras_ganaug.synthesize import resize_images, synthesize, vet_images

    per_class: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        per_class.setdefault(source.class_name, []).append(i)
    missing = [c for c, n in class_counts.items() if n and c not in per_class]
    if missing:
        raise UserError(f"--synthetic-classes all: no --generator makes class {missing[0]!r}; "
                        f"give a conditional generator or one trained on each class")
    counts = [0] * len(sources)
    for class_name, members in per_class.items():
        total = class_counts.get(class_name, 0)
        for i, n in zip(members, split_evenly(total, len(members)), strict=True):
            counts[i] = n
    batches, records = [], []
    for i, (source, count) in enumerate(zip(sources, counts, strict=True)):
        generator_seed = int(np.random.SeedSequence((seed, i)).generate_state(1, np.uint32)[0])
        n_generate = math.ceil(count / vet_keep) if vet else count
        images = synthesize(source.path, n_generate, generator_seed, source.class_id,
                            batch_size=GENERATION_BATCH)
        record = {"path": source.path, "gan_type": source.metadata.get("gan_type"),
                  "class": source.class_name, "class_id_asked": source.class_id,
                  "count": count, "seed": generator_seed,
                  "generator_image_size": int(source.metadata["image_size"]),
                  "generator_n_real": source.metadata.get("n_real"),
                  "generator_seed": source.metadata.get("seed")}
        if vet:
            class_id = source.class_id if source.class_id >= 0 else _trained_id(source)
            ids = np.full(len(images), class_id, np.int32)
            images, record["vetting"] = vet_images(source.path, images, ids, count)
        images, record["resize"] = resize_images(images, image_size, upscale)
        batches.append((source.class_name, images))
        records.append(record)
    return batches, records


def _trained_id(source: GeneratorSource) -> int:
    """The class index an unconditional generator's discriminator was trained with."""
    trained_id = source.metadata.get("trained_class_id", source.metadata.get("trained_class", 0))
    return trained_id if isinstance(trained_id, int) else 0


# Splits -------------------------------------------------------------------------------------

@dataclass
class Splits:
    """The three splits as uint8 arrays; `synthetic` flags the training rows that are generated."""

    class_names: tuple[str, ...]
    minority: str
    x_train: np.ndarray
    y_train: np.ndarray
    synthetic: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    files: dict[str, list[str]]
    generators: list[dict]
    skipped_images: list[str] = field(default_factory=list)  # unreadable, left out (--skip-bad-images)
    converted_modes: dict[str, int] = field(default_factory=dict)  # colour modes converted, counted
    oversampled: np.ndarray | None = None  # training rows that are repeats of real images
    dropped_test_duplicates: list[dict] = field(default_factory=list)  # --drop-test-duplicates

    def counts(self, split: str) -> dict:
        """Per-class image counts of a split (train: real, synthetic and oversampled apart)."""
        def tally(labels):
            return {name: int(np.sum(labels == i)) for i, name in enumerate(self.class_names)}

        if split == "train":
            repeats = (self.oversampled if self.oversampled is not None
                       else np.zeros(len(self.y_train), bool))
            return {"real": tally(self.y_train[~self.synthetic & ~repeats]),
                    "synthetic": tally(self.y_train[self.synthetic]),
                    "oversampled": tally(self.y_train[repeats])}
        return tally(self.y_val if split == "val" else self.y_test)


def _image_hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images}


def check_synthetic_only_in_train(synthetic_images: np.ndarray, x_val: np.ndarray,
                                  x_test: np.ndarray) -> None:
    """Raise if any synthetic image (byte for byte) is in the validation or test split."""
    if len(synthetic_images) == 0:
        return
    fakes = _image_hashes(synthetic_images)
    for name, split in (("validation", x_val), ("test", x_test)):
        if fakes & _image_hashes(split):
            raise AssertionError(f"a synthetic image leaked into the {name} split")


REMEDY = {
    "test": "pass --drop-test-duplicates to score without those test images, or retrain the GAN "
            "with --drop-test-duplicates",
    "val": "train the GAN with the same --n-real, --seed and --val-fraction as the classifier "
           "(train_gan.py then holds the validation images out)",
}


def check_generators_never_saw(sources: list[GeneratorSource], images, split: str) -> None:
    """Refuse a generator trained on any of `images` (by file hash), naming the first files.

    A GAN trained on test images would carry the test split into training through its fakes; one
    trained on val images would let early stopping and the threshold be chosen on images it
    memorized. Either way the numbers would flatter the GAN, so the run stops.
    """
    if not sources:
        return
    from keras_ganaug.data import file_hashes

    hashes = file_hashes(images)
    for source in {s.path: s for s in sources}.values():
        trained = set(source.metadata.get("training_files_sha256") or [])
        seen = [f for f, h in zip(images.files, hashes, strict=True) if h in trained]
        if seen:
            examples = ", ".join(seen[:3])
            raise UserError(f"--generator {source.path}: was trained on {len(seen)} image(s) of "
                            f"the {split} split (e.g. {examples}); its fakes would leak them; "
                            f"{REMEDY[split]}")


def drop_test_duplicates(test_set, train_set, sources: list[GeneratorSource]):
    """(kept test ImageSet, [{"test", "train"}...]): test images byte-identical to a file of the
    whole train split or to a generator's training file, left out so scoring can go on honestly.

    Against the whole train split, not this run's cut: every run on the data then drops the same
    test images, and their scores stay paired."""
    from keras_ganaug.data import file_hashes

    known = dict(zip(file_hashes(train_set), train_set.files, strict=True))
    for source in sources:
        for digest in source.metadata.get("training_files_sha256") or []:
            known.setdefault(digest, f"a training file of {source.path}")
    hashes = file_hashes(test_set)
    dropped = [{"test": f, "train": known[h]}
               for f, h in zip(test_set.files, hashes, strict=True) if h in known]
    keep = np.array([h not in known for h in hashes])
    return test_set.subset(keep), dropped


def oversample(x: np.ndarray, y: np.ndarray, counts: dict[int, int],
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`counts[c]` repeats of class c's real training images, each image as often as the others
    (whole seeded passes, then part of one): the non-GAN twin of adding that many fakes."""
    rng = np.random.default_rng([seed, 11])
    picks = []
    for label, count in sorted(counts.items()):
        idx = np.flatnonzero(y == label)
        if not count or not len(idx):
            continue
        passes = [rng.permutation(idx) for _ in range(math.ceil(count / len(idx)))]
        picks.append(np.concatenate(passes)[:count])
    chosen = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    return x[chosen], y[chosen]


def _data_root(data: str) -> str:
    if data != "demo":
        return data
    from keras_ganaug.demo import DEMO_DIR, make_demo_data

    return str(make_demo_data(DEMO_DIR))


def build_splits(config: ClassifierConfig) -> Splits:
    """Load the data of a resolved config, cut the minority, split off validation, add extras."""
    from keras_ganaug.data import list_images, load_images, select_real, split_validation

    root = _data_root(config.data)
    full_train_set = list_images(root, "train")
    test_set = list_images(root, "test")
    if test_set.class_names != full_train_set.class_names:
        raise UserError(f"--data {config.data}: test classes {test_set.class_names} differ from "
                        f"train classes {full_train_set.class_names}")
    if len(full_train_set.class_names) < 2:
        raise UserError(f"--data {config.data}: a classifier needs at least two classes; "
                        f"{full_train_set.source} has only {full_train_set.class_names[0]!r}")
    minority = config.minority or full_train_set.fewest_class()
    if minority not in full_train_set.class_names:
        raise UserError(f"--minority {minority}: not a class of {full_train_set.source}; classes "
                        f"are {', '.join(full_train_set.class_names)}")
    train_set = select_real(full_train_set, minority, config.n_real, config.seed)
    # Drawn from the listing, as train_gan.py draws it: the same files for the same settings.
    _, val_listing = split_validation(train_set, config.val_fraction, config.seed)
    sources = [source for p in config.generators
               for source in open_generator(p, train_set.class_names, minority, config.channels,
                                            config.synthetic_classes)]
    dropped = []
    if config.drop_test_duplicates:
        test_set, dropped = drop_test_duplicates(test_set, full_train_set, sources)
    check_generators_never_saw(sources, test_set, "test")
    check_generators_never_saw(sources, val_listing, "val")
    x_real, y_real, train_set, train_report = load_images(
        train_set, config.image_size, config.channels, resize_mode=config.resize,
        skip_bad_images=config.skip_bad_images)
    x_test, y_test, test_set, test_report = load_images(
        test_set, config.image_size, config.channels, resize_mode=config.resize,
        skip_bad_images=config.skip_bad_images)
    is_val = np.isin(np.asarray(train_set.files), np.asarray(val_listing.files))
    x_train, y_train = x_real[~is_val], y_real[~is_val]
    x_val, y_val = x_real[is_val], y_real[is_val]
    names = train_set.class_names
    if len(np.unique(y_val)) < len(names):
        raise UserError(f"--val-fraction {config.val_fraction}: the validation split lacks a "
                        f"class (counts {np.bincount(y_val, minlength=len(names)).tolist()} for "
                        f"{', '.join(names)})")
    real_counts = {name: int(np.sum(y_train == i)) for i, name in enumerate(names)}
    extras = (extra_counts(config.synthetic, real_counts, minority, config.synthetic_classes)
              if config.synthetic else {})

    batches, records = [], []
    if sources:
        batches, records = make_synthetic(
            sources, extras, config.image_size, config.seed, config.vet, config.vet_keep,
            config.upscale)
    fakes = [images for _, images in batches if len(images)]
    fake_x = np.concatenate(fakes) if fakes else x_train[:0]
    fake_y = np.concatenate([np.full(len(images), names.index(name), np.int32)
                             for name, images in batches if len(images)] or [y_train[:0]])
    check_synthetic_only_in_train(fake_x, x_val, x_test)
    repeat_x, repeat_y = x_train[:0], y_train[:0]
    if config.oversample:
        repeat_x, repeat_y = oversample(x_train, y_train,
                                        {names.index(c): n for c, n in extras.items()}, config.seed)
    files = {"train": [f for f, v in zip(train_set.files, is_val, strict=True) if not v],
             "val": [f for f, v in zip(train_set.files, is_val, strict=True) if v],
             "test": list(test_set.files)}
    n_train, n_fake = len(x_train), len(fake_x)
    rows = np.arange(n_train + n_fake + len(repeat_x))
    return Splits(
        class_names=names, minority=minority,
        x_train=np.concatenate([x_train, fake_x, repeat_x]),
        y_train=np.concatenate([y_train, fake_y, repeat_y]).astype(np.int32),
        synthetic=(rows >= n_train) & (rows < n_train + n_fake),
        x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, files=files, generators=records,
        skipped_images=train_report.skipped + test_report.skipped,
        converted_modes=dict(Counter(train_report.converted_modes)
                             + Counter(test_report.converted_modes)),
        oversampled=rows >= n_train + n_fake,
        dropped_test_duplicates=dropped)


# Training -----------------------------------------------------------------------------------

def train_dataset(x, y, config: ClassifierConfig, first_epoch: int = 0):
    """Endless shuffled, augmented tf.data of ([-1, 1] float32 images, int32 labels), epoch after
    epoch from `first_epoch`: fit with steps_per_epoch = ceil(len(x) / batch_size).

    Epoch e's order and augmentations are a pure function of (seed, e) (and of the position in
    the epoch), not of a shuffle or seed state, so a run resumed at epoch e trains on exactly
    the batches the uninterrupted run did.
    """
    import tensorflow as tf

    from keras_ganaug.augment import classic_augmentation, parse_augment, reseed, superpixel_map
    from keras_ganaug.data import epoch_seed, permutations, to_float

    classic, superpixel = parse_augment(config.augment)
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    layer = classic_augmentation(config.seed) if classic else None
    superpixel_fn = (superpixel_map(config.superpixel_p, config.superpixel_segments, config.seed)
                     if superpixel else None)

    def scale_and_augment(epoch, batch, images, labels):
        images = to_float(images)
        if layer is None:
            return images, labels
        reseed(layer, epoch_seed(config.seed, epoch, batch))
        return layer(images, training=True), labels

    def one_epoch(epoch):
        order = permutations(epoch_seed(config.seed, epoch), 1, len(x))[0]
        ds = tf.data.Dataset.from_tensor_slices(order).enumerate()
        ds = ds.map(lambda position, i: (tf.gather(images, i), tf.gather(labels, i), epoch,
                                         position))
        if superpixel_fn is not None:
            ds = ds.map(superpixel_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            ds = ds.map(lambda image, label, epoch, position: (image, label))
        # Sequential map: reseed and the layers' draws must not interleave between batches.
        return ds.batch(config.batch_size).enumerate().map(
            lambda batch, pair: scale_and_augment(epoch, batch, *pair))

    return tf.data.Dataset.counter(first_epoch).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def make_callbacks(out: Path, config: ClassifierConfig, val_dataset, y_val: np.ndarray,
                   verbose: int, append: bool = False) -> list:
    """The prior-free val scores first (the others read them), early stopping on --monitor with
    the best weights restored, CSV, TensorBoard, and last the per-epoch backup that --resume
    restores, which also writes best.keras (`append`: go on in history.csv)."""
    import keras

    from keras_ganaug.callbacks import TrainingBackup
    from keras_ganaug.selection import early_stopping, make_validation_callback

    stopper = early_stopping(config.monitor, config.patience, config.min_epochs, verbose)
    return [make_validation_callback(val_dataset, y_val), stopper,
            keras.callbacks.CSVLogger(str(out / "history.csv"), append=append),
            keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
            TrainingBackup(out / BACKUP_DIR, stopper, out / "best.keras")]


def read_history(history_csv: Path) -> dict[str, list[float]]:
    """history.csv of CSVLogger -> {metric: [value per epoch]}, the shape of History.history."""
    import pandas as pd

    if not history_csv.is_file():
        return {}
    frame = pd.read_csv(history_csv)
    return {c: [float(v) for v in frame[c]] for c in frame.columns if c != "epoch"}


def effective_priors(labels: np.ndarray, n_classes: int,
                     weights: dict[int, float] | None) -> np.ndarray:
    """The class prior the loss saw: training counts times their class weights, normalised."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes).astype(np.float64)
    if weights:
        counts *= np.array([weights[c] for c in range(n_classes)])
    return counts / counts.sum()


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """scikit-learn's "balanced" weights, n_samples / (n_classes * count), for present classes."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    result = {int(c): float(w) for c, w in zip(present, weights, strict=True)}
    return {c: result.get(c, 1.0) for c in range(n_classes)}


def prepare_out(config: ClassifierConfig) -> Path:
    """Create OUT, checked writable; refuse (never delete) a finished or unfinished run there
    unless --overwrite, and --resume with settings other than the run's. Returns the folder to
    write in: OUT, or, when --overwrite replaces a run, a new staging folder next to it (see
    files.stage_replacement). Writes nothing else."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    finished = (out / METRICS_FILE).is_file()
    started = (out / RUN_CONFIG_FILE).is_file()
    if config.resume:
        if finished:
            raise UserError(f"--resume: {out} holds a finished run ({METRICS_FILE}); nothing to "
                            f"resume (pass --overwrite instead of --resume to run it again)")
        if not started:
            raise UserError(f"--resume: {out} holds no run to resume (no {RUN_CONFIG_FILE})")
        # A setting added after the run started (older version) counts as its default.
        previous = {**asdict(ClassifierConfig()),
                    **json.loads((out / RUN_CONFIG_FILE).read_text())}
        current = asdict(config)
        changed = [k for k in RESUME_KEYS if previous[k] != current[k]]
        if changed:
            key = changed[0]
            raise UserError(f"--resume: --{key.replace('_', '-')} is {current[key]!r} but the run "
                            f"in {out} used {previous.get(key)!r}")
    elif (finished or started) and not config.overwrite:
        what = (f"a finished run ({METRICS_FILE})" if finished
                else "an unfinished run (pass --resume to continue it)")
        raise UserError(f"--out {out}: holds {what}; pass --overwrite to replace it or choose "
                        f"another --out")
    elif finished or started:
        return stage_replacement(out)
    ensure_writable(out)
    return out


def run(config: ClassifierConfig, verbose: int = 1) -> dict:
    """Train and evaluate one classifier; returns the dict also written to OUT/metrics.json.

    An --overwrite of an earlier run is written to a staging folder that replaces OUT only once
    it is finished: a run that fails or is killed halfway leaves the earlier one as it was.
    """
    started = time.perf_counter()
    config = resolve(config)
    if config.weights == "imagenet":
        # Before TensorFlow's start-up and minutes of loading and generating.
        check_imagenet_reachable(config.model)
    out = prepare_out(config)
    return finish_in(out, Path(config.out), lambda: _train_and_evaluate(config, out, verbose,
                                                                         started))


def _train_and_evaluate(config: ClassifierConfig, out: Path, verbose: int, started: float) -> dict:
    """The run, written into `out` (OUT or its staging folder)."""
    import keras
    import tensorflow as tf

    from keras_ganaug.callbacks import TrainingBackup, trim_history
    from keras_ganaug.classifiers import build_classifier
    from keras_ganaug.data import make_dataset
    from keras_ganaug.metrics.classification import (
        classification_metrics,
        decide,
        plot_confusion_matrix,
        plot_learning_curves,
        plot_roc,
        tune_decision,
        tuned_metrics,
    )
    from keras_ganaug.selection import MONITORS, best_epoch

    keras.backend.clear_session()  # a study runs many cells in one process: free the last one
    keras.utils.set_random_seed(config.seed)
    precision = runtime.choose_precision(config.precision)
    strategy = runtime.choose_strategy(config.strategy)  # TF_CONFIG checked before OUT changes
    splits = build_splits(config)
    # Only now, with the data checked, does anything in OUT change.
    write_json_atomic(out / RUN_CONFIG_FILE, asdict(config))
    if verbose and splits.skipped_images:
        print(f"skipped {len(splits.skipped_images)} unreadable images (--skip-bad-images), e.g. "
              f"{splits.skipped_images[0]}")
    if verbose and splits.converted_modes:
        modes = ", ".join(f"{n} {mode}" for mode, n in sorted(splits.converted_modes.items()))
        print(f"converted to {'RGB' if config.channels == 3 else 'L'}: {modes}")
    prepared = time.perf_counter()
    trainable = 0 if config.freeze else config.fine_tune
    # Built and compiled inside the scope: its variables and optimizer state live on every
    # replica, and the policy gives the layers their 16-bit compute (the softmax stays float32).
    with runtime.precision_scope(precision), strategy.scope():
        model = build_classifier(config.model, config.image_size, config.channels,
                                 len(splits.class_names), weights=config.weights,
                                 trainable_layers=trainable, learning_rate=config.learning_rate)
        if strategy.num_replicas_in_sync > 1:
            runtime.synchronize_batch_norm(model)
    val_ds = make_dataset(splits.x_val, splits.y_val, config.batch_size, shuffle=False,
                          seed=config.seed)
    test_ds = make_dataset(splits.x_test, splits.y_test, config.batch_size, shuffle=False,
                           seed=config.seed)
    weights = (class_weights(splits.y_train, len(splits.class_names))
               if config.class_weights else None)
    callbacks = make_callbacks(out, config, val_ds, splits.y_val, verbose, append=config.resume)
    backup = next(c for c in callbacks if isinstance(c, TrainingBackup))
    initial_epoch = backup.restore(model) if config.resume else 0
    train_ds = train_dataset(splits.x_train, splits.y_train, config, initial_epoch)
    trim_history(out / "history.csv", initial_epoch)
    earlier = read_history(out / "history.csv") if initial_epoch else {}
    fit_started = time.perf_counter()
    # shuffle=False: train_ds already reshuffles every epoch, with the run's seed.
    history = model.fit(train_ds, validation_data=val_ds,
                        epochs=initial_epoch if backup.stopped else config.epochs,
                        initial_epoch=initial_epoch, class_weight=weights, verbose=verbose,
                        steps_per_epoch=-(-len(splits.x_train) // config.batch_size),
                        shuffle=False, callbacks=callbacks)
    train_seconds = time.perf_counter() - fit_started
    if not (out / "best.keras").is_file():
        # No epoch reached --min-epochs, so early stopping chose none: the model evaluated is
        # the last epoch's, and best.keras must be that model.
        tmp = out / f".tmp-{os.getpid()}.keras"
        model.save(tmp)
        os.replace(tmp, out / "best.keras")
    scores = model.predict(test_ds, verbose=0)
    minority_index = splits.class_names.index(splits.minority)
    decision = tune_decision(splits.y_val, model.predict(val_ds, verbose=0), minority_index,
                             effective_priors(splits.y_train, len(splits.class_names), weights),
                             seed=config.seed)
    # A run resumed after its last epoch trains none: its whole history is the earlier one.
    latest = {k: [float(v) for v in values] for k, values in history.history.items()}
    history_dict = {k: earlier.get(k, []) + latest.get(k, []) for k in {**earlier, **latest}}
    val_loss = history_dict.get("val_loss", [])
    metrics = classification_metrics(splits.y_test, scores, splits.class_names, splits.minority)
    chosen = best_epoch(history_dict, config.monitor, config.min_epochs)
    upscale_used = sorted({g["resize"] for g in splits.generators})
    result = {
        **metrics,
        "seed": config.seed,
        "config": asdict(config),
        "train_counts": splits.counts("train"),
        "val_counts": splits.counts("val"),
        "test_counts": splits.counts("test"),
        "generators": splits.generators,
        "skipped_images": splits.skipped_images,
        "converted_modes": splits.converted_modes,
        "resumed_from_epoch": initial_epoch,
        "upscale": upscale_used,
        "class_weights": weights,
        "val_tuned": tuned_metrics(splits.y_test, scores, splits.class_names, splits.minority,
                                   decision),
        "decision": decision,
        "test_outputs": {"labels": [int(v) for v in splits.y_test],
                         "scores": np.round(np.asarray(scores, np.float64), 6).tolist(),
                         "val_tuned_predictions": [int(v) for v in decide(scores, decision)]},
        "dropped_test_duplicates": splits.dropped_test_duplicates,
        "epochs_run": len(val_loss),
        "monitor": config.monitor,
        "best_epoch": chosen,
        "best_monitor_value": (history_dict[MONITORS[config.monitor][0]][chosen - 1]
                               if chosen else None),
        "best_val_loss": float(val_loss[chosen - 1]) if chosen and val_loss else None,
        "history": history_dict,
        "parameters": int(model.count_params()),
        "precision": precision,
        "replicas": strategy.num_replicas_in_sync,
        "timings": {"prepare_seconds": prepared - started, "train_seconds": train_seconds,
                    "total_seconds": time.perf_counter() - started},
        "versions": {"keras_ganaug": __version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "python": platform.python_version()},
    }
    result["figures"] = {
        "learning_curves": plot_learning_curves(history_dict, out / "learning_curves.png"),
        "roc": plot_roc(splits.y_test, scores, splits.class_names, out / "roc.png"),
        "confusion_matrix": plot_confusion_matrix(metrics["confusion_matrix"],
                                                  splits.class_names,
                                                  out / "confusion_matrix.png"),
    }
    # Where the figures are once a staged --overwrite has replaced OUT.
    result["figures"] = {name: str(Path(config.out) / Path(path).relative_to(out))
                         for name, path in result["figures"].items()}
    write_json_atomic(out / "splits.json", splits.files)
    result["timings"]["total_seconds"] = time.perf_counter() - started
    write_json_atomic(out / METRICS_FILE, result)  # last: its presence marks a finished run
    shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)
    return result

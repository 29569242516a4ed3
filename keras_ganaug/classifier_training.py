"""Train one classifier on real (+ synthetic) images and measure it on the untouched test split.

The order of operations is what keeps the numbers honest:
  1. list the train split; cut the minority to --n-real with data.select_real (the same files
     train_gan.py trains on for the same N and seed); load the images.
  2. split validation off the real training images, stratified, before anything synthetic exists.
  3. generate synthetic images (optionally vetted by the exported discriminator, resized to
     --image-size) and append them to the training split only: checked, not just intended.
  4. fit with early stopping on validation loss; evaluate the restored best weights on the test
     split; write OUT/metrics.json (last: it marks a finished run) and the figures.

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
from keras_ganaug.errors import UserError
from keras_ganaug.files import ensure_writable, finish_in, stage_replacement, write_json_atomic

TRANSFER_MODELS = ("vgg16", "resnet50")
METRICS_FILE = "metrics.json"
RUN_CONFIG_FILE = "run_config.json"  # written once the data is checked: marks a started run
BACKUP_DIR = "backup"  # per-epoch state for --resume, removed once the run has finished
# Settings that must match for --resume to continue a run rather than start a different one.
RESUME_KEYS = ("data", "minority", "n_real", "model", "weights", "freeze", "fine_tune", "augment",
               "superpixel_p", "superpixel_segments", "generators", "synthetic", "vet",
               "vet_keep", "upscale", "class_weights", "val_fraction", "batch_size",
               "learning_rate", "image_size", "channels", "resize", "seed", "skip_bad_images",
               "precision")
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
    synthetic: str | None = None         # balance | COUNT | REAL:SYNTHETIC; None: balance if generators
    vet: bool = False                    # keep only the fakes the discriminator finds most real
    vet_keep: float = 0.5                # the fraction of generated fakes kept when vetting
    upscale: str = "bicubic"             # bicubic | PATH of a super-resolution SavedModel
    class_weights: bool = False          # sklearn "balanced" class weights in the loss
    val_fraction: float = 0.2
    epochs: int = 30
    patience: int = 5
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
    """"balance" | "COUNT" | "REAL:SYNTHETIC" -> ("balance", None) | ("count", n) | ("ratio", s/r)."""
    text = spec.strip()
    if text == "balance":
        return "balance", None
    if text.isdigit():
        return "count", int(text)
    parts = text.split(":")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts) and min(map(int, parts)) > 0:
        return "ratio", Fraction(int(parts[1]), int(parts[0]))
    raise UserError(f"--synthetic {spec}: expected balance, a count like 200, or a real:synthetic "
                    f"ratio like 1:2")


def synthetic_count(spec: str, real_counts: dict[str, int], class_name: str) -> int:
    """How many synthetic images of `class_name` --synthetic asks for, given the real train counts.

    balance fills the class up to the largest class; 1:2 adds twice as many fakes as the class has
    real training images. Counts are of the training split, after validation was taken out.
    """
    kind, value = parse_synthetic(spec)
    if kind == "balance":
        return max(0, max(real_counts.values()) - real_counts[class_name])
    if kind == "count":
        return int(value)
    return int(round(real_counts[class_name] * value))


def split_evenly(total: int, parts: int) -> list[int]:
    """total -> `parts` counts differing by at most one (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# Validation ---------------------------------------------------------------------------------

def resolve(config: ClassifierConfig) -> ClassifierConfig:
    """Check every setting a user can get wrong and fill in the defaults that depend on others."""
    from keras_ganaug.augment import parse_augment

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
    if config.generators:
        synthetic = synthetic or "balance"
        parse_synthetic(synthetic)
    elif synthetic is not None or config.vet:
        raise UserError("--synthetic / --vet need at least one --generator PATH")
    if not 0.0 < config.vet_keep <= 1.0:
        raise UserError(f"--vet-keep {config.vet_keep}: expected a fraction in (0, 1]")
    if config.upscale != "bicubic" and not Path(config.upscale).is_dir():
        raise UserError(f"--upscale {config.upscale}: expected bicubic or the folder of a "
                        f"super-resolution SavedModel")
    if not 0.0 < config.val_fraction < 1.0:
        raise UserError(f"--val-fraction {config.val_fraction}: expected a fraction in (0, 1)")
    for flag, value, least in (("--epochs", config.epochs, 1), ("--batch-size", config.batch_size, 1),
                               ("--image-size", config.image_size, 1),
                               ("--patience", config.patience, 0)):
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
    extra = (synthetic or "real").replace(":", "to")
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


def open_generator(path: str, class_names: tuple[str, ...], minority: str,
                   channels: int) -> GeneratorSource:
    """Read and check a generator export against the classifier's data and settings."""
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
        return GeneratorSource(path, metadata, minority, generator_classes.index(minority))
    trained = metadata.get("trained_class")
    if isinstance(trained, int) and generator_classes:
        trained = generator_classes[trained]
    if trained not in class_names:
        raise UserError(f"--generator {path}: trained on class {trained!r}, which is not a class "
                        f"of --data ({', '.join(class_names)})")
    return GeneratorSource(path, metadata, trained, -1)


def make_synthetic(sources: list[GeneratorSource], real_counts: dict[str, int], spec: str,
                   image_size: int, seed: int, vet: bool, vet_keep: float,
                   upscale: str) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """Synthetic images per generator -> ([(class_name, uint8 images)], provenance records).

    Each target class gets the count --synthetic asks for, split evenly over the generators that
    make that class. Generator i draws with a seed derived from (seed, i) by numpy's SeedSequence
    and recorded: reproducible, and the per-batch seeds of different generators never collide
    the way seed + i would (synthesize uses seed + batch index).
    """
    from keras_ganaug.synthesize import resize_images, synthesize, vet_images

    per_class: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        per_class.setdefault(source.class_name, []).append(i)
    counts = [0] * len(sources)
    for class_name, members in per_class.items():
        total = synthetic_count(spec, real_counts, class_name)
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

    def counts(self, split: str) -> dict:
        """Per-class image counts of a split (train: real and synthetic separately)."""
        def tally(labels):
            return {name: int(np.sum(labels == i)) for i, name in enumerate(self.class_names)}

        if split == "train":
            return {"real": tally(self.y_train[~self.synthetic]),
                    "synthetic": tally(self.y_train[self.synthetic])}
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


def _check_generators_never_saw(sources: list[GeneratorSource], images, split: str,
                                refuse: bool) -> list[int]:
    """How many of `images` each generator was trained on (by file hash); refuse if asked to.

    A GAN trained on test images would carry the test split into training through its fakes.
    """
    if not sources:
        return []
    from keras_ganaug.data import file_hashes

    hashes = set(file_hashes(images))
    seen = [len(hashes & set(s.metadata.get("training_files_sha256") or [])) for s in sources]
    for source, n in zip(sources, seen, strict=True):
        if refuse and n:
            raise UserError(f"--generator {source.path}: was trained on {n} image(s) of the "
                            f"{split} split of --data; its fakes would leak them into training")
    return seen


def _data_root(data: str) -> str:
    if data != "demo":
        return data
    from keras_ganaug.demo import DEMO_DIR, make_demo_data

    return str(make_demo_data(DEMO_DIR))


def build_splits(config: ClassifierConfig) -> Splits:
    """Load the data of a resolved config, cut the minority, split off validation, add fakes."""
    from sklearn.model_selection import train_test_split

    from keras_ganaug.data import list_images, load_images, select_real

    root = _data_root(config.data)
    train_set = list_images(root, "train")
    test_set = list_images(root, "test")
    if test_set.class_names != train_set.class_names:
        raise UserError(f"--data {config.data}: test classes {test_set.class_names} differ from "
                        f"train classes {train_set.class_names}")
    if len(train_set.class_names) < 2:
        raise UserError(f"--data {config.data}: a classifier needs at least two classes; "
                        f"{train_set.source} has only {train_set.class_names[0]!r}")
    minority = config.minority or train_set.fewest_class()
    if minority not in train_set.class_names:
        raise UserError(f"--minority {minority}: not a class of {train_set.source}; classes are "
                        f"{', '.join(train_set.class_names)}")
    train_set = select_real(train_set, minority, config.n_real, config.seed)
    sources = [open_generator(p, train_set.class_names, minority, config.channels)
               for p in config.generators]
    x_real, y_real, train_set, train_report = load_images(
        train_set, config.image_size, config.channels, resize_mode=config.resize,
        skip_bad_images=config.skip_bad_images)
    x_test, y_test, test_set, test_report = load_images(
        test_set, config.image_size, config.channels, resize_mode=config.resize,
        skip_bad_images=config.skip_bad_images)
    _check_generators_never_saw(sources, test_set, "test", refuse=True)
    try:
        train_idx, val_idx = train_test_split(
            np.arange(len(y_real)), test_size=config.val_fraction, stratify=y_real,
            random_state=config.seed)
    except ValueError as err:
        raise UserError(f"--val-fraction {config.val_fraction}: cannot split the "
                        f"{len(y_real)} training images per class {train_set.counts()} "
                        f"({err})") from err
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    x_train, y_train = x_real[train_idx], y_real[train_idx]
    x_val, y_val = x_real[val_idx], y_real[val_idx]
    real_counts = {name: int(np.sum(y_train == i)) for i, name in enumerate(train_set.class_names)}

    batches, records = [], []
    if sources:
        batches, records = make_synthetic(
            sources, real_counts, config.synthetic, config.image_size, config.seed, config.vet,
            config.vet_keep, config.upscale)
    # Expected to be nonzero: the GAN trained on the same real minority the validation split
    # was cut from. Recorded, because early stopping then sees images the GAN memorized.
    val_images = train_set.subset(np.isin(np.arange(len(y_real)), val_idx))
    seen = _check_generators_never_saw(sources, val_images, "val", refuse=False)
    for record, n_seen in zip(records, seen, strict=True):
        record["trained_on_val_images"] = n_seen
    fakes = [images for _, images in batches if len(images)]
    fake_x = np.concatenate(fakes) if fakes else x_train[:0]
    fake_y = np.concatenate([np.full(len(images), train_set.class_names.index(name), np.int32)
                             for name, images in batches if len(images)] or [y_train[:0]])
    check_synthetic_only_in_train(fake_x, x_val, x_test)
    files = {"train": [train_set.files[i] for i in train_idx],
             "val": [train_set.files[i] for i in val_idx], "test": list(test_set.files)}
    return Splits(
        class_names=train_set.class_names, minority=minority,
        x_train=np.concatenate([x_train, fake_x]),
        y_train=np.concatenate([y_train, fake_y]).astype(np.int32),
        synthetic=np.concatenate([np.zeros(len(x_train), bool), np.ones(len(fake_x), bool)]),
        x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, files=files, generators=records,
        skipped_images=train_report.skipped + test_report.skipped,
        converted_modes=dict(Counter(train_report.converted_modes)
                             + Counter(test_report.converted_modes)))


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


def make_callbacks(out: Path, patience: int, verbose: int, append: bool = False) -> list:
    """Early stopping with the best weights restored, CSV, TensorBoard, and last the per-epoch
    backup that --resume restores, which also writes best.keras (`append`: go on in history.csv)."""
    import keras

    from keras_ganaug.callbacks import TrainingBackup

    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                            restore_best_weights=True, verbose=verbose)
    return [stopper, keras.callbacks.CSVLogger(str(out / "history.csv"), append=append),
            keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
            TrainingBackup(out / BACKUP_DIR, stopper, out / "best.keras")]


def read_history(history_csv: Path) -> dict[str, list[float]]:
    """history.csv of CSVLogger -> {metric: [value per epoch]}, the shape of History.history."""
    import pandas as pd

    if not history_csv.is_file():
        return {}
    frame = pd.read_csv(history_csv)
    return {c: [float(v) for v in frame[c]] for c in frame.columns if c != "epoch"}


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
        plot_confusion_matrix,
        plot_learning_curves,
        plot_roc,
    )

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
    callbacks = make_callbacks(out, config.patience, verbose, append=config.resume)
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
    scores = model.predict(test_ds, verbose=0)
    # A run resumed after its last epoch trains none: its whole history is the earlier one.
    latest = {k: [float(v) for v in values] for k, values in history.history.items()}
    history_dict = {k: earlier.get(k, []) + latest.get(k, []) for k in {**earlier, **latest}}
    val_loss = history_dict.get("val_loss", [])
    metrics = classification_metrics(splits.y_test, scores, splits.class_names, splits.minority)
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
        "epochs_run": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)) + 1 if val_loss else None,
        "best_val_loss": float(min(val_loss)) if val_loss else None,
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

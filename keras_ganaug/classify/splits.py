"""The classifier's train / val / test arrays: real images listed, cut to --n-real, split
for validation before anything synthetic exists, then the extra images (fakes or oversampled
reals) appended to the training split only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from keras_ganaug.classify.config import ClassifierConfig, extra_counts
from keras_ganaug.classify.sources import (
    check_generators_never_saw,
    check_synthetic_only_in_train,
    drop_test_duplicates,
    make_synthetic,
    open_generator,
)
from keras_ganaug.data.images import ImageSet
from keras_ganaug.errors import UserError


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
    from keras_ganaug.data.demo import DEMO_DIR, make_demo_data

    return str(make_demo_data(DEMO_DIR))


def build_splits(config: ClassifierConfig) -> Splits:
    """Load the data of a resolved config, cut the minority, split off validation, add extras."""
    from keras_ganaug.data.images import protocol_cut

    full_train_set, test_set, minority = _list_real(config)
    # Drawn from the listing, as train_gan.py draws it: the same files for the same settings.
    train_listing, val_listing = protocol_cut(full_train_set, minority, config.n_real, config.seed,
                                              config.val_fraction)
    sources = [source for p in config.generators
               for source in open_generator(p, full_train_set.class_names, minority,
                                            config.channels, config.synthetic_classes)]
    dropped = []
    if config.drop_test_duplicates:
        test_set, dropped = drop_test_duplicates(test_set, full_train_set, sources)
    settings = {"n_real": config.n_real, "seed": config.seed, "val_fraction": config.val_fraction}
    check_generators_never_saw(sources, test_set, "test", settings)
    check_generators_never_saw(sources, val_listing, "val", settings)
    x_train, y_train, train_set, train_report = _load(config, train_listing)
    x_val, y_val, val_set, val_report = _load(config, val_listing)
    x_test, y_test, test_set, test_report = _load(config, test_set)
    reports = (train_report, val_report, test_report)
    names = train_set.class_names
    if len(np.unique(y_val)) < len(names):
        raise UserError(f"--val-fraction {config.val_fraction}: the validation split lacks a "
                        f"class (counts {np.bincount(y_val, minlength=len(names)).tolist()} for "
                        f"{', '.join(names)})")
    fake_x, fake_y, records = _synthetic_rows(config, sources, minority, names, x_train, y_train)
    check_synthetic_only_in_train(fake_x, x_val, x_test)
    repeat_x, repeat_y = _oversampled_rows(config, minority, names, x_train, y_train)
    files = {"train": list(train_set.files), "val": list(val_set.files),
             "test": list(test_set.files)}
    n_train, n_fake = len(x_train), len(fake_x)
    rows = np.arange(n_train + n_fake + len(repeat_x))
    return Splits(
        class_names=names, minority=minority,
        x_train=np.concatenate([x_train, fake_x, repeat_x]),
        y_train=np.concatenate([y_train, fake_y, repeat_y]).astype(np.int32),
        synthetic=(rows >= n_train) & (rows < n_train + n_fake),
        x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, files=files, generators=records,
        skipped_images=[f for report in reports for f in report.skipped],
        converted_modes=dict(sum((Counter(r.converted_modes) for r in reports), Counter())),
        oversampled=rows >= n_train + n_fake,
        dropped_test_duplicates=dropped)


def _list_real(config: ClassifierConfig) -> tuple[ImageSet, ImageSet, str]:
    """The train and test listings of --data and the minority class, checked against each other."""
    from keras_ganaug.data.images import list_images

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
    return full_train_set, test_set, minority


def _load(config: ClassifierConfig, images: ImageSet):
    """images.load_images at the run's size, channels and resize mode."""
    from keras_ganaug.data.images import load_images

    return load_images(images, config.image_size, config.channels, resize_mode=config.resize,
                       skip_bad_images=config.skip_bad_images)


def _extras(config: ClassifierConfig, minority: str, names: tuple[str, ...],
            y_train: np.ndarray) -> dict[str, int]:
    """Extra images per class that --synthetic asks for, counted on the real training split."""
    real_counts = {name: int(np.sum(y_train == i)) for i, name in enumerate(names)}
    return (extra_counts(config.synthetic, real_counts, minority, config.synthetic_classes)
            if config.synthetic else {})


def _synthetic_rows(config: ClassifierConfig, sources: list, minority: str,
                    names: tuple[str, ...], x_train: np.ndarray, y_train: np.ndarray):
    """(fake images, their labels, the generators' records) for the training split."""
    batches, records = [], []
    if sources:
        batches, records = make_synthetic(
            sources, _extras(config, minority, names, y_train), config.image_size, config.seed,
            config.vet, config.vet_keep, config.upscale)
    fakes = [images for _, images in batches if len(images)]
    fake_x = np.concatenate(fakes) if fakes else x_train[:0]
    fake_y = np.concatenate([np.full(len(images), names.index(name), np.int32)
                             for name, images in batches if len(images)] or [y_train[:0]])
    return fake_x, fake_y, records


def _oversampled_rows(config: ClassifierConfig, minority: str, names: tuple[str, ...],
                      x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """--oversample: repeats of real training images, as many per class as fakes would be."""
    if not config.oversample:
        return x_train[:0], y_train[:0]
    extras = _extras(config, minority, names, y_train)
    return oversample(x_train, y_train, {names.index(c): n for c, n in extras.items()},
                      config.seed)

"""The study in one command: real-minority counts x methods x seeds -> results.csv, summary, report.

    python -m keras_ganaug.study --data DIR --minority malignant --n-real 50,200,all \\
        --methods real,classic,dcgan+diffaugment --seeds 3 --image-size 64 --out runs/study

A cell is one (N, method, synthetic ratio, seed): a classifier trained on N real minority images
(plus whatever the method adds) and measured on the untouched test split. The rules every method
goes through, so the procedure favours none: one validation split per (N, seed), drawn from the
file listing before anything trains and held out of every GAN (data.split_validation, checked by
hash); early stopping on the val ROC AUC and the decision threshold tuned on val (selection.py,
classification.tune_decision); every GAN the same budget in images shown (--gan-kimg); the extra
images of a GAN method and of its non-GAN twin `oversample` counted by one rule
(classifier_training.extra_counts). Each generator is trained once per (GAN, GAN augmentation, N,
seed) and reused by every method and ratio that needs it (dcgan and dcgan+classic share one). Every finished cell is written to OUT/cells/<cell>.json (atomically), so a crashed or
killed study resumes where it stopped; OUT/results.csv is rebuilt from those files after each cell.
`--shard i/k` runs the i-th of k deterministic, cost-balanced parts of the work (a unit: one
generator and the cells that use it, or one non-GAN cell), so a cluster job array with
--array=0-(k-1) runs the grid in parallel on a shared OUT.

Layout of OUT:
  study.json            the configuration
  invocations/*.json    every run of the command on OUT: command line, shard, wall time
  cells/<cell>.json     one finished cell: its row of results.csv
  runs/<cell>/          the classifier run (metrics.json, figures, best.keras)
  generators/<gan>_n<N>_s<seed>/   the GAN export, samples/, quality.json
  feature_extractor/    classifier trained on the whole real training split: features for quality
  leakage.json          test-vs-train and generator hash checks
  results.csv summary.csv report.md figures/   (remade by --report-only)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from keras_ganaug.data import DEFAULT_VAL_FRACTION
from keras_ganaug.errors import UserError, quiet_tensorflow, run_cli
from keras_ganaug.files import write_text_atomic
from keras_ganaug.selection import DEFAULT_MIN_EPOCHS, DEFAULT_MONITOR, MONITORS

GAN_AUGMENTS = ("diffaugment", "ada")
CLASSIFIER_AUGMENTS = ("classic", "superpixel")
ALL_CLASSES = "all-classes"  # method suffix: every class gets the same share of extra images
DEFAULT_N_REAL = "10,50,100,200,250,300,500,all"
DEFAULT_METHODS = "real,class-weights,oversample+classic,dcgan+diffaugment"
DEFAULT_SYNTHETIC = "balance"
DEFAULT_SEEDS = 5
DEFAULT_GAN_KIMG = 40.0
# Where the test split holds near-duplicates of training images, these metrics are measured again
# without those test images, in columns with this suffix.
LEAK_FREE = "_leak_free"
LEAK_FREE_METRICS = ("accuracy", "roc_auc", "balanced_accuracy", "minority_recall")
# Fakes drawn per generator for the quality measures: the real class's size, within these bounds.
QUALITY_SAMPLES = (50, 1000)


@dataclass(frozen=True)
class Method:
    """What one column of the study adds to the real images."""

    name: str
    gan: str | None = None
    gan_augment: str = "none"
    augment: str = "none"
    class_weights: bool = False
    oversample: bool = False  # repeat real images: the non-GAN twin of a GAN method
    all_classes: bool = False  # extra images for every class, at the minority's share

    @property
    def adds_images(self) -> bool:
        """Whether --synthetic applies: a GAN's fakes or oversampled real images."""
        return self.gan is not None or self.oversample


def parse_method(text: str) -> Method:
    """'dcgan+diffaugment+classic' -> Method; parts: GAN or oversample first, then modifiers."""
    from keras_ganaug.gans import GAN_NAMES

    parts = [p.strip() for p in text.strip().split("+") if p.strip()]
    expected = (f"real, class-weights, classic, superpixel, oversample, or a GAN "
                f"({', '.join(GAN_NAMES)}) with optional +diffaugment / +ada, and +classic / "
                f"+superpixel / +class-weights / +{ALL_CLASSES}")
    if parts == ["real"]:
        return Method("real")
    gan = parts[0] if parts and parts[0] in GAN_NAMES else None
    oversample = bool(parts) and parts[0] == "oversample"
    rest = parts[1:] if gan or oversample else parts
    modifiers = (*GAN_AUGMENTS, *CLASSIFIER_AUGMENTS, "class-weights", ALL_CLASSES)
    unknown = [p for p in rest if p not in modifiers]
    if not parts or unknown or len(set(rest)) != len(rest):
        raise UserError(f"--methods {text}: expected {expected}")
    gan_augments = [p for p in rest if p in GAN_AUGMENTS]
    if len(gan_augments) > 1 or (gan_augments and not gan):
        raise UserError(f"--methods {text}: +diffaugment / +ada follow a GAN name, one at most")
    if ALL_CLASSES in rest and not (gan or oversample):
        raise UserError(f"--methods {text}: +{ALL_CLASSES} follows a GAN name or oversample")
    augments = [a for a in CLASSIFIER_AUGMENTS if a in rest]
    method = Method("", gan, gan_augments[0] if gan_augments else "none",
                    "+".join(augments) or "none", "class-weights" in rest, oversample,
                    ALL_CLASSES in rest)
    return replace(method, name=method_name(method))


def method_name(method: Method) -> str:
    """The canonical spelling: GAN or oversample, GAN augmentation, classic, superpixel,
    class-weights, all-classes."""
    parts = [method.gan] if method.gan else (["oversample"] if method.oversample else [])
    parts += [method.gan_augment] if method.gan_augment != "none" else []
    parts += method.augment.split("+") if method.augment != "none" else []
    parts += ["class-weights"] if method.class_weights else []
    parts += [ALL_CLASSES] if method.all_classes else []
    return "+".join(parts) or "real"


def parse_synthetic_list(text: str) -> list[str]:
    """'balance,1:1,20%' -> the distinct --synthetic values of the ratio axis, each checked."""
    from keras_ganaug.classifier_training import parse_synthetic

    values = [v.strip() for v in text.split(",") if v.strip()]
    for value in values:
        parse_synthetic(value)
    if not values or len(set(values)) != len(values):
        raise UserError(f"--synthetic {text}: expected distinct values, e.g. balance,1:1,20%")
    return values


def synthetic_label(spec: str) -> str:
    """A --synthetic value as it can stand in a cell id (the classifier's run-name rule)."""
    from keras_ganaug.classifier_training import synthetic_label as label

    return label(spec)


def parse_n_real(text: str) -> list[int | None]:
    """'10,50,all' -> [10, 50, None]; None is every real minority image."""
    values: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            values.append(None)
        elif part.isdigit() and int(part) > 0:
            values.append(int(part))
        else:
            raise UserError(f"--n-real {text}: expected positive counts or 'all', comma-separated")
    if not values or len(set(values)) != len(values):
        raise UserError(f"--n-real {text}: expected distinct counts, e.g. 10,50,all")
    return values


def parse_shard(text: str) -> tuple[int, int]:
    """'i/k' -> (i, k) with 0 <= i < k: the i-th of k shards, numbered from 0 like job arrays."""
    parts = text.split("/")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and 0 <= int(parts[0]) < int(parts[1]):
        return int(parts[0]), int(parts[1])
    raise UserError(f"--shard {text}: expected i/k with 0 <= i < k, e.g. 0/4 ... 3/4")


def n_label(n_real: int | None) -> str:
    return "all" if n_real is None else str(n_real)


@dataclass
class StudyConfig:
    """Every setting of a study grid; the fields mirror the command-line flags."""

    data: str | None = None              # None: the built-in demo set
    minority: str | None = None          # None: the class with the fewest train images
    n_real: list[int | None] = field(default_factory=lambda: parse_n_real(DEFAULT_N_REAL))
    methods: list[str] = field(default_factory=lambda: DEFAULT_METHODS.split(","))
    synthetic: list[str] = field(default_factory=lambda: [DEFAULT_SYNTHETIC])  # the ratio axis
    seeds: int = DEFAULT_SEEDS
    model: str = "cnn5"
    weights: str | None = None
    image_size: int = 64
    channels: int = 3
    gan_kimg: float | None = DEFAULT_GAN_KIMG  # the same budget in images shown for every N
    gan_epochs: int | None = None        # instead of gan_kimg: passes over the N images
    gan_batch_size: int = 64
    epochs: int = 30
    patience: int = 5
    min_epochs: int = DEFAULT_MIN_EPOCHS
    monitor: str = DEFAULT_MONITOR
    val_fraction: float = DEFAULT_VAL_FRACTION
    drop_test_duplicates: bool = False
    batch_size: int = 32
    vet: bool = False
    quality: bool = True                 # KID, precision/recall, memorization, TSTR per generator
    inception_weights: str | None = None  # local InceptionV3 no-top weights: KID/FID on them too
    out: str = "runs/study"
    shard: tuple[int, int] = (0, 1)
    verbose: int = 1


@dataclass(frozen=True)
class Cell:
    n_real: int | None
    seed: int
    method: Method
    synthetic: str | None = None  # the --synthetic value, for methods that add images

    @property
    def arm(self) -> str:
        """What the report compares: the method, at its ratio when it adds images."""
        return self.method.name if self.synthetic is None else f"{self.method.name}@{self.synthetic}"

    @property
    def cell_id(self) -> str:
        ratio = "" if self.synthetic is None else f"_{synthetic_label(self.synthetic)}"
        return f"n{n_label(self.n_real)}_s{self.seed}_{self.method.name}{ratio}"

    @property
    def generator_key(self) -> str | None:
        if self.method.gan is None:
            return None
        augment = "" if self.method.gan_augment == "none" else f"-{self.method.gan_augment}"
        return f"{self.method.gan}{augment}_n{n_label(self.n_real)}_s{self.seed}"


def plan(config: StudyConfig) -> list[list[Cell]]:
    """Every unit of work in a fixed order: cells that share a generator form one unit."""
    methods = [parse_method(m) for m in config.methods]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise UserError(f"--methods {','.join(config.methods)}: a method is listed twice")
    units: dict[str, list[Cell]] = {}
    for n_real in config.n_real:
        for seed in range(config.seeds):
            for method in methods:
                for synthetic in (config.synthetic if method.adds_images else [None]):
                    cell = Cell(n_real, seed, method, synthetic)
                    units.setdefault(cell.generator_key or cell.cell_id, []).append(cell)
    return list(units.values())


def declared_comparisons(config: StudyConfig) -> list[tuple[str, str]]:
    """(GAN arm, non-GAN arm) pairs the report tests, fixed by the flags before anything runs:
    every GAN arm against every non-GAN arm, an image-adding baseline (oversample) at the same
    ratio only. Never a "best" baseline picked after seeing the results."""
    methods = [parse_method(m) for m in config.methods]
    arms = [(m, s) for m in methods for s in (config.synthetic if m.adds_images else [None])]
    pairs = []
    for gan, gan_ratio in arms:
        if gan.gan is None:
            continue
        for base, base_ratio in arms:
            if base.gan is None and (base_ratio is None or base_ratio == gan_ratio):
                pairs.append((Cell(None, 0, gan, gan_ratio).arm, Cell(None, 0, base, base_ratio).arm))
    return pairs


# Rough cost of training a generator, in classifier runs: balances shards, changes no result.
GENERATOR_COST = 3


def unit_cost(unit: list[Cell]) -> int:
    return len(unit) + (GENERATOR_COST if unit[0].generator_key else 0)


def shard_units(units: list[list[Cell]], shard: tuple[int, int]) -> list[list[Cell]]:
    """The units of shard i of k: costliest first to the least-loaded shard (ties: lowest index).

    Deterministic for a given grid, so every shard of a job array computes the same split.
    """
    index, count = shard
    loads = [0] * count
    mine = []
    for position in sorted(range(len(units)), key=lambda i: (-unit_cost(units[i]), i)):
        target = loads.index(min(loads))
        loads[target] += unit_cost(units[position])
        if target == index:
            mine.append(position)
    return [units[i] for i in sorted(mine)]


# Files -------------------------------------------------------------------------------------------

def write_json(path: Path, payload) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, default=str))


def finished_cells(out: Path) -> dict[str, dict]:
    """cell id -> row, for every cell already done (its cells/<id>.json exists)."""
    folder = out / "cells"
    if not folder.is_dir():
        return {}
    rows = {}
    for path in sorted(folder.glob("*.json")):
        row = json.loads(path.read_text())
        rows[row["cell"]] = row
    return rows


def write_results(out: Path) -> Path:
    """OUT/results.csv from every finished cell: one row per (N, method, seed)."""
    import pandas as pd

    rows = [{k: v for k, v in row.items() if k != PER_IMAGE_KEY}
            for row in finished_cells(out).values()]
    frame = pd.DataFrame(rows)
    if len(frame):
        first = [c for c in ROW_KEYS if c in frame.columns]
        frame = frame[first + sorted(c for c in frame.columns if c not in first)]
        frame = frame.sort_values(["n_minority", "method", "seed"], kind="stable")
    path = out / "results.csv"
    write_text_atomic(path, frame.to_csv(index=False))
    return path


ROW_KEYS = ("cell", "arm", "n_real", "n_minority", "method", "synthetic", "seed", "gan",
            "gan_augment", "augment", "class_weights", "oversample", "model", "image_size",
            "epochs", "gan_kimg", "accuracy", "roc_auc", "balanced_accuracy", "minority_recall",
            "macro_f1", "threshold")
# Kept in cells/<cell>.json for the paired bootstrap, too long for a CSV column.
PER_IMAGE_KEY = "test_outputs"
DECISION_METRICS = ("accuracy", "balanced_accuracy", "minority_recall", "macro_f1")


def flatten_metrics(metrics: dict) -> dict:
    """The classifier's metrics.json -> flat CSV columns (lists of curves and configs left out).

    accuracy, balanced accuracy, minority recall and macro F1 are at the val-tuned threshold (the
    study's rule); the argmax ones are kept as argmax_*. ROC AUC comes from the scores.
    """
    row = {k: metrics.get(k) for k in ("roc_auc", "n_test", "epochs_run", "best_epoch",
                                       "best_monitor_value", "best_val_loss", "parameters")}
    tuned = metrics.get("val_tuned") or {}
    for key in DECISION_METRICS:
        row[f"argmax_{key}"] = metrics.get(key)
        row[key] = tuned.get(key, metrics.get(key))
    row["threshold"] = tuned.get("threshold")
    for name, values in tuned.get("per_class", metrics.get("per_class", {})).items():
        for key, value in values.items():
            row[f"{key}_{name}"] = value
    names = metrics.get("class_names", [])
    for i, true_row in enumerate(tuned.get("confusion_matrix", metrics.get("confusion_matrix", []))):
        for j, count in enumerate(true_row):
            row[f"confusion_{names[i]}_as_{names[j]}"] = count
    for split in ("real", "synthetic", "oversampled"):
        for name, count in metrics.get("train_counts", {}).get(split, {}).items():
            row[f"train_{split}_{name}"] = count
    for name, count in metrics.get("val_counts", {}).items():
        row[f"val_{name}"] = count
    for key, value in metrics.get("timings", {}).items():
        row[f"classifier_{key}"] = value
    return row


# Adapters: the one place each side of the package is called ----------------------------------------

def classifier_config(config: StudyConfig, method: Method, n_real: int | None = None,
                      seed: int = 0, generators: list[str] | None = None,
                      synthetic: str | None = None, out: str | None = None):
    """The ClassifierConfig of one cell: the one place study settings become classifier flags."""
    from keras_ganaug.classifier_training import ClassifierConfig

    return ClassifierConfig(
        data=data_root(config), minority=config.minority, n_real=n_real, model=config.model,
        weights=config.weights, augment=method.augment, generators=generators or [],
        synthetic=synthetic, oversample=method.oversample,
        synthetic_classes="all" if method.all_classes else "minority",
        vet=config.vet and bool(generators), class_weights=method.class_weights,
        epochs=config.epochs, patience=config.patience, min_epochs=config.min_epochs,
        monitor=config.monitor, val_fraction=config.val_fraction,
        drop_test_duplicates=config.drop_test_duplicates, batch_size=config.batch_size,
        image_size=config.image_size, channels=config.channels, seed=seed, out=out or config.out,
        overwrite=True)


def train_classifier(config: StudyConfig, method: Method, n_real: int | None, seed: int,
                     generators: list[str], synthetic: str | None, out: Path) -> dict:
    """One classifier run through keras_ganaug.classifier_training; returns its metrics dict."""
    from keras_ganaug.classifier_training import run

    classifier = classifier_config(config, method, n_real, seed, generators, synthetic, str(out))
    try:
        return run(classifier, verbose=config.verbose)
    finally:
        release_models()


def check_classifier_settings(config: StudyConfig, methods: list[Method]) -> None:
    """Let the classifier side reject its flags (model, weights, augmentation, --synthetic) now,
    not after the first generator has trained."""
    from keras_ganaug.classifier_training import resolve

    for method in methods:
        # Generators do not exist yet: their settings are checked on their own below.
        for synthetic in config.synthetic if method.oversample else [None]:
            resolve(replace(classifier_config(config, method, synthetic=synthetic),
                            synthetic_classes="minority"))


def check_gan_settings(config: StudyConfig, methods: list[Method]) -> None:
    """Let the GAN side reject unknown GAN types and image sizes before anything trains."""
    gans = sorted({m.gan for m in methods if m.gan})
    if not gans:
        return
    from keras_ganaug.gans import GAN_NAMES
    from keras_ganaug.gans.networks import check_image_size

    missing = [gan for gan in gans if gan not in GAN_NAMES]
    if missing:
        raise UserError(f"--methods {','.join(config.methods)}: GAN {missing[0]!r} is not "
                        f"available; this install has {', '.join(GAN_NAMES)}")
    check_image_size(config.image_size)


def load_classifier(run_folder: Path):
    """The best model a classifier run saved (custom layers registered by importing classifiers)."""
    import keras

    import keras_ganaug.classifiers  # noqa: F401  registers the package's serializable layers

    return keras.saving.load_model(run_folder / "best.keras")


def train_generator(config: StudyConfig, cell: Cell, out: Path,
                    class_name: str | None = None) -> dict:
    """One GAN run through keras_ganaug.gan_training (resumed if a crash left it half done).

    class_name: another class than the minority (its own GAN for +all-classes), every image of it.
    """
    from keras_ganaug.gan_training import GANConfig, run

    started = (out / "run_config.json").is_file()
    gan = GANConfig(data=data_root(config), class_name=class_name or config.minority,
                    gan=cell.method.gan, n_real=cell.n_real if class_name is None else None,
                    image_size=config.image_size, channels=config.channels,
                    epochs=config.gan_epochs or 1, kimg=None if config.gan_epochs else config.gan_kimg,
                    batch_size=config.gan_batch_size, val_fraction=config.val_fraction,
                    drop_test_duplicates=config.drop_test_duplicates,
                    augment=cell.method.gan_augment, seed=cell.seed, out=str(out),
                    resume=started, overwrite=not started, verbose=config.verbose)
    try:
        return run(gan)
    finally:
        release_models()


def release_models() -> None:
    """Free Keras' global state between cells: a grid builds hundreds of models in one process."""
    import keras

    keras.backend.clear_session()


def evaluate_classifier(run_folder: Path, images, labels, class_names: list[str],
                        minority: str, decision: dict | None = None) -> dict:
    """Metrics of a finished run's best model (the one its metrics.json measured) on given images;
    with the run's val-tuned `decision`, the decision metrics are at it, as the study reports."""
    from keras_ganaug.data import make_dataset
    from keras_ganaug.metrics.classification import classification_metrics, tuned_metrics

    model = load_classifier(run_folder)
    scores = model.predict(make_dataset(images, labels, 64, shuffle=False, seed=0), verbose=0)
    release_models()
    metrics = classification_metrics(labels, scores, class_names, minority)
    if decision:
        metrics.update(tuned_metrics(labels, scores, class_names, minority, decision))
    return metrics


def minority_name(config: StudyConfig) -> str:
    """--minority, or the class with the fewest training images."""
    from keras_ganaug.data import list_images

    return config.minority or list_images(data_root(config), "train").fewest_class()


def val_images_seen(run_folder: Path, generators: list[str]) -> int | None:
    """How many of the run's validation files (splits.json) any generator trained on, by sha256:
    the proof, per cell, that no val image reached a GAN (the classifier refuses otherwise);
    None when the run left no splits.json to check."""
    import hashlib

    splits = run_folder / "splits.json"
    if not generators or not splits.is_file():
        return 0 if not generators else None
    val_files = json.loads(splits.read_text())["val"]
    val_hashes = {hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in val_files
                  if Path(f).is_file()}
    trained = set()
    for folder in generators:
        trained |= set(json.loads((Path(folder) / "metadata.json").read_text())
                       .get("training_files_sha256") or [])
    return len(val_hashes & trained)


def data_root(config: StudyConfig) -> str:
    """--data, or the built-in demo set (written on first use) when it is not given."""
    if config.data is not None:
        return config.data
    from keras_ganaug.demo import make_demo_data

    return str(make_demo_data())


def generator_is_finished(folder: Path) -> bool:
    return (folder / "metadata.json").is_file() and (folder / "generator").is_dir()


# The grid --------------------------------------------------------------------------------------

class FeatureSpace:
    """GAN quality for the study, in one self-supervised feature space (metrics/features.py).

    The encoder is trained once per study (seed 0) on every real TRAINING image of every class,
    without labels, into OUT/feature_extractor/features.keras; shards that train it at once each
    write a private file and the last rename wins, and all then load the same file. The test
    split's minority images are the real images no generator saw: the footing of memorization
    and the other side of the classifier two-sample test (C2ST); they never shape the features.
    """

    FILE = "features.keras"

    def __init__(self, config: StudyConfig, out: Path):
        from keras_ganaug.data import list_images, load_images
        from keras_ganaug.metrics import quality
        from keras_ganaug.metrics.features import (
            load_feature_space,
            save_feature_space,
            train_feature_space,
        )

        self.config = config
        root = data_root(config)
        self.train_set = list_images(root, "train")
        self.minority = config.minority or self.train_set.fewest_class()
        self.minority_id = self.train_set.class_index(self.minority)
        self.x_train, self.train_labels, self.train_set, _ = load_images(
            self.train_set, config.image_size, config.channels)
        self.x_test, self.test_labels, _, _ = load_images(list_images(root, "test"),
                                                          config.image_size, config.channels)
        path = out / "feature_extractor" / self.FILE
        if not path.is_file():
            encoder, _ = train_feature_space(self.x_train, seed=0)
            save_feature_space(encoder, path)
        self.model = load_feature_space(path)
        self.train_features = quality.extract_features(self.model, self.x_train)
        self.test_features = quality.extract_features(self.model, self.x_test)
        self.inception = None
        if config.inception_weights:
            self.inception = quality.inception_model(config.inception_weights, config.channels)
            minority_images = self.x_train[self.train_labels == self.minority_id]
            self.inception_real = quality.extract_features(self.inception, minority_images)

    def measure(self, generator_folder: Path, n_real: int | None, seed: int) -> dict:
        """Quality of one generator: KID, precision / recall, memorization and C2ST against the
        unseen real minority (test split), TSTR, and the images it trained on."""
        import numpy as np

        from keras_ganaug.data import select_real, split_validation
        from keras_ganaug.export import load_metadata
        from keras_ganaug.metrics import quality
        from keras_ganaug.quality import image_measures
        from keras_ganaug.synthesize import synthesize

        metadata = load_metadata(generator_folder)
        class_id = self.minority_id if metadata.get("conditional") else -1
        unseen = self.x_test[self.test_labels == self.minority_id]
        count = int(np.clip(len(unseen), *QUALITY_SAMPLES))
        fakes = synthesize(generator_folder, count, seed=10_000 + seed, class_id=class_id)
        # The images this generator saw: the cell's seeded cut, less its validation split.
        cut = select_real(self.train_set, self.minority, n_real, seed)
        seen = set(split_validation(cut, self.config.val_fraction, seed)[0].files)
        in_cut = np.array([f in seen for f in self.train_set.files])
        seen_minority = self.x_train[in_cut & (self.train_labels == self.minority_id)]
        fake_features = quality.extract_features(self.model, fakes)
        result = {"samples": count,
                  **image_measures(fakes, unseen, seen_minority, self.model, seed=seed),
                  **quality.tstr(self.train_features[in_cut], self.train_labels[in_cut],
                                 fake_features, self.minority_id, self.test_features,
                                 self.test_labels, seed=seed)}
        if self.inception is not None:
            inception_fakes = quality.extract_features(self.inception, fakes)
            result["kid_inception"] = quality.kid(self.inception_real, inception_fakes,
                                                  seed=seed)["kid"]
            result["fid_inception"] = quality.frechet_distance(self.inception_real,
                                                               inception_fakes)
        return result


class Study:
    """Runs the cells of one shard, reusing generators and skipping finished cells."""

    def __init__(self, config: StudyConfig, leaked_test_files: set[str] | None = None):
        self.config = config
        self.out = Path(config.out)
        self.features = None  # FeatureSpace, built when the first generator is measured
        self.leaked_test_files = leaked_test_files or set()
        self.leak_free_test = None  # (images, labels, keep mask), loaded on first need
        self.code = code_version()  # recorded in every cell: a resumed grid may mix versions

    def other_class_generators(self, cell: Cell, minority: str) -> list[str]:
        """+all-classes with an unconditional GAN: one generator per other class, trained on all
        of that class's train part (per seed, shared by every N), at the same kimg."""
        from keras_ganaug.data import list_images

        if cell.method.gan == "cgan":
            return []  # a conditional generator makes every class itself
        folders = []
        for name in list_images(data_root(self.config), "train").class_names:
            if name == minority:
                continue
            folder = self.out / "generators" / f"{cell.generator_key.rsplit('_n', 1)[0]}_{name}_s{cell.seed}"
            if not generator_is_finished(folder):
                train_generator(self.config, cell, folder, class_name=name)
            folders.append(str(folder))
        return folders

    def ensure_generator(self, cell: Cell) -> tuple[Path, dict]:
        """The generator of this cell (trained now, or left by an earlier cell or run) and its
        timings and quality as row columns; quality is measured once and kept in quality.json."""
        folder = self.out / "generators" / cell.generator_key
        timings_path = folder / "gan_timings.json"
        reused = generator_is_finished(folder) and timings_path.is_file()
        if not reused:
            started = time.perf_counter()
            result = train_generator(self.config, cell, folder)
            write_json(timings_path, {"gan_train_seconds": result.get("train_seconds"),
                                      "gan_total_seconds": time.perf_counter() - started,
                                      "gan_images_per_second": result.get("images_per_second"),
                                      "gan_epochs_trained": result.get("epochs"),
                                      "gan_steps": result.get("steps"),
                                      "gan_kimg_trained": result.get("kimg")})
        columns = {**json.loads(timings_path.read_text()), "generator_reused": reused}
        quality_path = folder / "quality.json"
        if self.config.quality:
            if not quality_path.is_file():
                write_json(quality_path, self.generator_quality(cell, folder))
            quality = json.loads(quality_path.read_text())
            columns.update({f"gan_{k}": v for k, v in quality.items()
                            if isinstance(v, (int, float))})
        return folder, columns

    def generator_quality(self, cell: Cell, folder: Path) -> dict:
        """KID, precision / recall, memorization, TSTR of a generator in classifier features."""
        if self.features is None:
            self.features = FeatureSpace(self.config, self.out)
        return self.features.measure(folder, cell.n_real, cell.seed)

    def run_cell(self, cell: Cell) -> dict:
        started = time.perf_counter()
        config = self.config
        gan_budget = (f"{config.gan_epochs} epochs" if config.gan_epochs
                      else f"{config.gan_kimg:g} kimg")
        row = {"cell": cell.cell_id, "arm": cell.arm, "n_real": n_label(cell.n_real),
               "method": cell.method.name, "seed": cell.seed, "gan": cell.method.gan or "",
               "gan_augment": cell.method.gan_augment, "augment": cell.method.augment,
               "class_weights": cell.method.class_weights, "oversample": cell.method.oversample,
               "all_classes": cell.method.all_classes, "model": config.model,
               "image_size": config.image_size, "epochs": config.epochs,
               "synthetic": cell.synthetic or "",
               "gan_kimg": gan_budget if cell.method.gan else ""}
        generators = []
        if cell.method.gan:
            folder, gan_row = self.ensure_generator(cell)
            generators = [str(folder)]
            if cell.method.all_classes:
                generators += self.other_class_generators(cell, minority_name(config))
            row.update(gan_row)
            row["generator"] = str(folder.relative_to(self.out))
        run_folder = self.out / "runs" / cell.cell_id
        metrics = train_classifier(config, cell.method, cell.n_real, cell.seed, generators,
                                   cell.synthetic, run_folder)
        row.update(flatten_metrics(metrics))
        row[PER_IMAGE_KEY] = metrics.get("test_outputs")
        if metrics.get("minority") in metrics.get("class_names", []):
            row["minority_index"] = metrics["class_names"].index(metrics["minority"])
        row["val_images_seen_by_gans"] = val_images_seen(run_folder, generators)
        minority = metrics.get("minority")
        if self.leaked_test_files:
            row.update(self.leak_free(run_folder, metrics["class_names"], minority,
                                      metrics.get("decision")))
        row["minority"] = minority
        row["n_minority"] = (metrics.get("train_counts", {}).get("real", {}).get(minority, 0)
                             + metrics.get("val_counts", {}).get(minority, 0))
        row["cell_seconds"] = time.perf_counter() - started
        row["code"] = self.code
        write_json(self.out / "cells" / f"{cell.cell_id}.json", row)
        return row

    def leak_free(self, run_folder: Path, class_names: list[str], minority: str,
                  decision: dict | None = None) -> dict:
        """The run's headline metrics again, on the test images with no near-duplicate in train,
        at the run's own val-tuned decision."""
        if self.leak_free_test is None:
            import numpy as np

            from keras_ganaug.data import list_images, load_images

            x_test, y_test, loaded, _ = load_images(list_images(data_root(self.config), "test"),
                                                    self.config.image_size, self.config.channels)
            keep = np.array([f not in self.leaked_test_files for f in loaded.files])
            self.leak_free_test = (x_test[keep], y_test[keep])
        x_test, y_test = self.leak_free_test
        metrics = evaluate_classifier(run_folder, x_test, y_test, class_names, minority, decision)
        return {**{f"{k}{LEAK_FREE}": metrics[k] for k in LEAK_FREE_METRICS},
                f"n_test{LEAK_FREE}": len(y_test)}

    def run(self) -> dict:
        """Run this shard's unfinished cells, then rebuild results, leakage check and report."""
        units = shard_units(plan(self.config), self.config.shard)
        cells = [cell for unit in units for cell in unit]
        done = finished_cells(self.out)
        todo = [cell for cell in cells if cell.cell_id not in done]
        if self.config.verbose:
            print(f"study: {len(cells)} cells in shard {self.config.shard[0]}/"
                  f"{self.config.shard[1]}, {len(cells) - len(todo)} already done -> {self.out}")
        for i, cell in enumerate(todo, 1):
            row = self.run_cell(cell)
            write_results(self.out)
            print(cell_line(i, len(todo), row), flush=True)
        return {"cells": len(cells), "ran": len(todo), "skipped": len(cells) - len(todo)}


def cell_line(index: int, total: int, row: dict) -> str:
    """The one line the study prints per finished cell."""
    def fmt(key):
        value = row.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    gan = ""
    if row.get("gan"):
        reused = "reused" if row.get("generator_reused") else "trained"
        gan = f", generator {reused} ({row.get('gan_total_seconds') or 0:.0f} s)"
    return (f"[{index}/{total}] N={row['n_real']} seed={row['seed']} {row['method']}: "
            f"acc {fmt('accuracy')} auc {fmt('roc_auc')} minority recall "
            f"{fmt('minority_recall')} ({row['cell_seconds']:.0f} s{gan})")


def check_config(config: StudyConfig) -> None:
    """Reject settings that would fail hours into a grid, before anything trains."""
    plan(config)
    methods = [parse_method(m) for m in config.methods]
    if config.seeds < 1:
        raise UserError(f"--seeds {config.seeds}: expected 1 or more")
    for flag, value in (("--epochs", config.epochs), ("--gan-epochs", config.gan_epochs or 1),
                        ("--gan-kimg", config.gan_kimg or 1),
                        ("--image-size", config.image_size), ("--batch-size", config.batch_size)):
        if value <= 0:
            raise UserError(f"{flag} {value}: expected a positive number")
    if config.inception_weights and not Path(config.inception_weights).is_file():
        raise UserError(f"--inception-weights {config.inception_weights}: no such file")
    from keras_ganaug.data import list_images

    root = data_root(config)
    train = list_images(root, "train")
    list_images(root, "test")
    minority = config.minority or train.fewest_class()
    available = train.counts()[train.class_names[train.class_index(minority)]]
    too_many = [n for n in config.n_real if n is not None and n > available]
    if too_many:
        raise UserError(f"--n-real {too_many[0]}: class {minority!r} has {available} training "
                        f"images in {train.source}")
    check_gan_settings(config, methods)
    check_classifier_settings(config, methods)


def declare_study(out: Path, config: StudyConfig) -> None:
    """OUT/study.json: the settings and the comparisons the report will test, written before
    any cell runs, so what is compared is fixed before a single result exists."""
    config_dict = {k: v for k, v in asdict(config).items() if k not in ("shard", "verbose")}
    config_dict["n_real"] = [n_label(n) for n in config.n_real]
    write_json(out / "study.json", {"config": config_dict,
                                    "comparisons": declared_comparisons(config)})


def record_invocation(out: Path, config: StudyConfig, argv: list[str] | None, seconds: float,
                      outcome: dict, code: str) -> None:
    """OUT/invocations/<time>-<pid>.json (this run's command, shard, code and wall time): one
    file per run, so shards finishing together lose nothing."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    # pid and nanoseconds: two runs in one process and second must not share a file name
    write_json(out / "invocations" / f"{stamp}-{os.getpid()}-{time.time_ns()}.json",
               {"command": "python -m keras_ganaug.study " + shlex.join(argv or []),
                "shard": list(config.shard), "wall_seconds": round(seconds, 1),
                "finished": stamp, "code": code, **outcome})


def code_version() -> str:
    """The package version and, in a git checkout, the commit: which code made these cells."""
    import subprocess

    from keras_ganaug import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}" + (f" ({commit})" if commit else "")


def invocations(out: Path) -> list[dict]:
    """Every recorded run of the study on OUT, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((out / "invocations").glob("*.json"))]


def check_same_grid(out: Path, config: StudyConfig) -> None:
    """A resumed OUT must hold the same kind of study: model, sizes and epochs decide the numbers."""
    path = out / "study.json"
    if not path.is_file():
        return
    previous = json.loads(path.read_text()).get("config", {})
    for key in ("data", "minority", "model", "weights", "image_size", "channels", "epochs",
                "gan_epochs", "gan_kimg", "vet", "val_fraction", "monitor", "min_epochs",
                "patience", "drop_test_duplicates"):
        if key in previous and previous[key] != getattr(config, key):
            raise UserError(f"--out {out}: holds a study with --{key.replace('_', '-')} "
                            f"{previous[key]!r}, not {getattr(config, key)!r}; choose another "
                            f"--out or the same settings")


def run_study(config: StudyConfig, argv: list[str] | None = None) -> dict:
    """Run (this shard of) the grid, then the leakage check and the report; returns counts."""
    check_config(config)
    out = Path(config.out)
    check_same_grid(out, config)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code = code_version()  # read now: the checkout may change while a long grid runs
    declare_study(out, config)
    # Before the grid: which test images are (near-)copies of training images, so every cell can
    # also be measured without them; again after it, with every generator's recorded hashes.
    outcome = Study(config, leaked_test_files(write_leakage(config, out))).run()
    write_results(out)
    write_leakage(config, out)
    record_invocation(out, config, argv, time.perf_counter() - started, outcome, code)
    from keras_ganaug.report import write_report

    write_report(out)
    return outcome


def write_leakage(config: StudyConfig, out: Path) -> dict:
    """OUT/leakage.json: the test split against the training split and every generator's hashes."""
    from keras_ganaug import leakage
    from keras_ganaug.data import list_images

    root = data_root(config)
    models = {}
    for folder in sorted((out / "generators").glob("*/")):
        if generator_is_finished(folder):
            metadata = json.loads((folder / "metadata.json").read_text())
            models[folder.name] = metadata.get("training_files_sha256", [])
    report = leakage.leakage_report(list_images(root, "train"), list_images(root, "test"), models)
    report["statement"] = leakage.describe(report)
    write_json(out / "leakage.json", report)
    return report


def leaked_test_files(report: dict) -> set[str]:
    """Test files that the leakage report pairs with a training image."""
    return {pair["test"] for pair in report["exact_duplicates"] + report["near_duplicates"]}


# Command line -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m keras_ganaug.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="image-folder root ROOT/{train,test}/CLASS/* (default: demo)")
    p.add_argument("--minority", help="class cut to N and synthesized (default: fewest images)")
    p.add_argument("--n-real", default=DEFAULT_N_REAL,
                   help=f"real minority counts, comma-separated, 'all' = every image "
                        f"(default {DEFAULT_N_REAL})")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="comma-separated: real, class-weights, classic, superpixel, oversample, "
                        "or a GAN (dcgan, cgan, wgan-gp, infogan) with +diffaugment / +ada, and "
                        f"+classic / +superpixel / +class-weights / +{ALL_CLASSES} "
                        f"(default {DEFAULT_METHODS})")
    p.add_argument("--synthetic", default=DEFAULT_SYNTHETIC,
                   help="the ratio axis, comma-separated: extra images per GAN or oversample "
                        "cell as balance, COUNT, REAL:SYNTHETIC or P%% of the real training "
                        "split, e.g. balance,1:1,20%% (default balance)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"seeds 0..K-1 per cell (default {DEFAULT_SEEDS})")
    p.add_argument("--model", default="cnn5", help="simple-cnn, cnn5, vgg16, resnet50")
    p.add_argument("--weights", help="transfer models: imagenet, none or PATH")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--gan-kimg", type=float, default=DEFAULT_GAN_KIMG,
                   help="every GAN's budget in thousands of real images shown, the same for "
                        f"every N (default {DEFAULT_GAN_KIMG:g})")
    p.add_argument("--gan-epochs", type=int,
                   help="instead of --gan-kimg: passes over the N images (budget grows with N)")
    p.add_argument("--gan-batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30, help="classifier epochs (early stopping)")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--min-epochs", type=int, default=DEFAULT_MIN_EPOCHS,
                   help="classifier epochs before early stopping may choose or stop")
    p.add_argument("--monitor", default=DEFAULT_MONITOR,
                   help=f"one of {', '.join(MONITORS)} (default {DEFAULT_MONITOR})")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="validation split per (N, seed), held out of every GAN")
    p.add_argument("--drop-test-duplicates", action="store_true",
                   help="leave test images byte-identical to a training image out of scoring")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vet", action="store_true", help="keep the fakes the discriminator likes")
    p.add_argument("--no-quality", action="store_true",
                   help="skip KID / precision-recall / memorization / TSTR per generator")
    p.add_argument("--inception-weights",
                   help="local InceptionV3 no-top weights file: KID and FID on it as well")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--shard", default="0/1", help="i/k: run the i-th of k balanced parts of the grid "
                   "(0-based, e.g. $SLURM_ARRAY_TASK_ID/4); all shards share --out")
    p.add_argument("--report-only", action="store_true",
                   help="remake results.csv, summary.csv, report.md and figures from OUT")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    return p


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    return StudyConfig(
        data=args.data, minority=args.minority, n_real=parse_n_real(args.n_real),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        synthetic=parse_synthetic_list(args.synthetic), seeds=args.seeds, model=args.model,
        weights=args.weights, image_size=args.image_size, channels=args.channels,
        gan_epochs=args.gan_epochs, gan_kimg=None if args.gan_epochs else args.gan_kimg,
        min_epochs=args.min_epochs, monitor=args.monitor, val_fraction=args.val_fraction,
        drop_test_duplicates=args.drop_test_duplicates,
        gan_batch_size=args.gan_batch_size, epochs=args.epochs, patience=args.patience,
        batch_size=args.batch_size, vet=args.vet, quality=not args.no_quality,
        inception_weights=args.inception_weights, out=args.out, shard=parse_shard(args.shard),
        verbose=0 if args.quiet else 1)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    if args.report_only:
        from keras_ganaug.report import write_report

        out = Path(args.out)
        if not (out / "cells").is_dir() and not (out / "results.csv").is_file():
            raise UserError(f"--out {out}: no study results there (expected cells/ or results.csv)")
        if (out / "cells").is_dir():
            write_results(out)
        paths = write_report(out)
        print(f"report: {paths['report']}")
        return 0
    config = config_from_args(args)
    outcome = run_study(config, argv if argv is not None else sys.argv[1:])
    print(f"study: ran {outcome['ran']} cells, skipped {outcome['skipped']} finished ones; "
          f"report: {Path(config.out) / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry: flags -> study; user errors -> one line on stderr and exit code 2."""
    # Finished cells are kept on disk, so the same command resumes the grid: it has no --resume.
    return run_cli(_main, argv, resume_hint="rerun the same command to go on")


if __name__ == "__main__":
    sys.exit(main())

"""The one place each side of the package is called from the study: classifier and GAN runs.

Every cell reaches the classifier and the GANs only through these functions, so study settings
become classifier and GAN flags by one rule, and the tests swap them for fast fakes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from keras_ganaug.errors import UserError
from keras_ganaug.study.grid import Cell, Method, StudyConfig, data_root


def classifier_config(config: StudyConfig, method: Method, n_real: int | None = None,
                      seed: int = 0, generators: list[str] | None = None,
                      synthetic: str | None = None, out: str | None = None):
    """The ClassifierConfig of one cell: the one place study settings become classifier flags."""
    from keras_ganaug.classify.config import ClassifierConfig

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
    """One classifier run through keras_ganaug.classify.training; returns its metrics dict."""
    from keras_ganaug.classify.training import run

    classifier = classifier_config(config, method, n_real, seed, generators, synthetic, str(out))
    try:
        return run(classifier, verbose=config.verbose)
    finally:
        release_models()


def check_classifier_settings(config: StudyConfig, methods: list[Method]) -> None:
    """Let the classifier side reject its flags (model, weights, augmentation, --synthetic) now,
    not after the first generator has trained."""
    from keras_ganaug.classify.config import resolve

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
    from keras_ganaug.gans.backbones.common import check_image_size
    from keras_ganaug.gans.registry import GAN_NAMES, gan_kind

    missing = [gan for gan in gans if gan not in GAN_NAMES]
    if missing:
        raise UserError(f"--methods {','.join(config.methods)}: GAN {missing[0]!r} is not "
                        f"available; this install has {', '.join(GAN_NAMES)}")
    for method in methods:
        refusal = gan_kind(method.gan).ada_refusal
        if method.gan_augment == "ada" and refusal:
            raise UserError(f"--methods {method.name}: {refusal}; use "
                            f"{method.gan}+diffaugment")
    check_image_size(config.image_size)


def train_generator(config: StudyConfig, cell: Cell, out: Path,
                    class_name: str | None = None) -> dict:
    """One GAN run through keras_ganaug.gans.training (resumed if a crash left it half done).

    class_name: another class than the minority (its own GAN for +all-classes), every image of it.
    """
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run

    started = (out / "run_config.json").is_file()
    # A method without an augmentation suffix trains with its recipe's (fastgan's DiffAugment).
    augment = None if cell.method.gan_augment == "none" else cell.method.gan_augment
    gan = GANConfig(data=data_root(config), class_name=class_name or config.minority,
                    gan=cell.method.gan, n_real=cell.n_real if class_name is None else None,
                    image_size=config.image_size, channels=config.channels,
                    epochs=config.gan_epochs, kimg=None if config.gan_epochs else config.gan_kimg,
                    batch_size=config.gan_batch_size, val_fraction=config.val_fraction,
                    drop_test_duplicates=config.drop_test_duplicates,
                    recipe=config.gan_recipe, augment=augment, seed=cell.seed, out=str(out),
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
    from keras_ganaug.classify import load_classifier
    from keras_ganaug.data.images import make_dataset
    from keras_ganaug.metrics.classification import classification_metrics, tuned_metrics

    model = load_classifier(run_folder)
    scores = model.predict(make_dataset(images, labels, 64, shuffle=False, seed=0), verbose=0)
    release_models()
    metrics = classification_metrics(labels, scores, class_names, minority)
    if decision:
        metrics.update(tuned_metrics(labels, scores, class_names, minority, decision))
    return metrics

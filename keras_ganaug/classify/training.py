"""Train one classifier on real (+ synthetic) images and measure it on the untouched test split.

The order of operations is what keeps the numbers honest:
  1. list the train split and draw the protocol's cut from the listing (images.protocol_cut):
     the minority cut to --n-real (the same files train_gan.py trains on for the same N and
     seed), then validation split off, stratified and seeded (the same files train_gan.py holds
     out for the same N, seed and --val-fraction), before anything synthetic exists; refuse a
     generator that saw any val or test image (by file hash); load the images (splits.py).
  3. generate synthetic images (optionally vetted by the exported discriminator, resized to
     --image-size), or oversample real ones, and append them to the training split only: checked,
     not just intended.
  4. fit with early stopping on a prior-free val metric (selection.py; --monitor last: every
     epoch, the last kept); choose the decision threshold on val; evaluate the restored best
     weights on the test split at argmax and at that threshold; write OUT/metrics.json (last: it
     marks a finished run) and the figures.

run(ClassifierConfig(...)) is what train_classifier.py and the study grid call.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from keras_ganaug import __version__, runtime
from keras_ganaug.classify.config import (
    BACKUP_DIR,
    METRICS_FILE,
    RESUME_KEYS,
    ClassifierConfig,
    resolve,
)
from keras_ganaug.classify.models import check_imagenet_reachable
from keras_ganaug.classify.splits import Splits, build_splits
from keras_ganaug.io import RUN_CONFIG_FILE, check_out, finish_in, write_json_atomic


def train_dataset(x, y, config: ClassifierConfig, first_epoch: int = 0):
    """Endless shuffled, augmented tf.data of ([-1, 1] float32 images, int32 labels), epoch after
    epoch from `first_epoch`: fit with steps_per_epoch = ceil(len(x) / batch_size).

    Epoch e's order and augmentations are a pure function of (seed, e) (and of the position in
    the epoch), not of a shuffle or seed state, so a run resumed at epoch e trains on exactly
    the batches the uninterrupted run did.
    """
    import tensorflow as tf

    from keras_ganaug.classify.augment import (
        classic_augmentation,
        parse_augment,
        reseed,
        superpixel_map,
    )
    from keras_ganaug.data.epoch_draws import epoch_seed, permutations
    from keras_ganaug.data.images import to_float

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

    from keras_ganaug.classify.backup import TrainingBackup
    from keras_ganaug.classify.selection import early_stopping, make_validation_callback

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
    """io.check_out for a classifier run (a finished run is not resumed); writes nothing else."""
    return check_out(Path(config.out), finished_marker=METRICS_FILE, resume=config.resume,
                     overwrite=config.overwrite, settings=asdict(config),
                     defaults=asdict(ClassifierConfig()), resume_keys=RESUME_KEYS,
                     resume_finished=False)


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

    from keras_ganaug.data.images import make_dataset

    keras.backend.clear_session()  # a study runs many cells in one process: free the last one
    keras.utils.set_random_seed(config.seed)
    precision = runtime.choose_precision(config.precision)
    strategy = runtime.choose_strategy(config.strategy)  # TF_CONFIG checked before OUT changes
    splits = build_splits(config)
    # Only now, with the data checked, does anything in OUT change.
    write_json_atomic(out / RUN_CONFIG_FILE, asdict(config))
    if verbose:
        _print_loading(splits, config.channels)
    prepared = time.perf_counter()
    model = _build_model(config, splits, precision, strategy)
    val_ds = make_dataset(splits.x_val, splits.y_val, config.batch_size, shuffle=False,
                          seed=config.seed)
    test_ds = make_dataset(splits.x_test, splits.y_test, config.batch_size, shuffle=False,
                           seed=config.seed)
    fit = _fit(model, config, splits, out, val_ds, verbose)
    _keep_last_model_if_none_was_best(model, out)
    scores = model.predict(test_ds, verbose=0)
    decision = _tune_decision(model, config, splits, val_ds, fit.class_weights)
    result = _result(config, splits, fit, model, scores, decision)
    result.update(precision=precision, replicas=strategy.num_replicas_in_sync,
                  timings={"prepare_seconds": prepared - started,
                           "train_seconds": fit.train_seconds,
                           "total_seconds": time.perf_counter() - started},
                  versions=_versions())
    result["figures"] = _draw_figures(fit.history, splits, scores, result["confusion_matrix"],
                                      out, Path(config.out))
    write_json_atomic(out / "splits.json", splits.files)
    result["timings"]["total_seconds"] = time.perf_counter() - started
    write_json_atomic(out / METRICS_FILE, result)  # last: its presence marks a finished run
    shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)
    return result


def _print_loading(splits: Splits, channels: int) -> None:
    """What loading left out (--skip-bad-images) or converted, in a line each."""
    if splits.skipped_images:
        print(f"skipped {len(splits.skipped_images)} unreadable images (--skip-bad-images), e.g. "
              f"{splits.skipped_images[0]}")
    if splits.converted_modes:
        modes = ", ".join(f"{n} {mode}" for mode, n in sorted(splits.converted_modes.items()))
        print(f"converted to {'RGB' if channels == 3 else 'L'}: {modes}")


def _build_model(config: ClassifierConfig, splits: Splits, precision: str, strategy):
    """The compiled classifier, built inside the precision policy and the distribution strategy."""
    from keras_ganaug.classify.networks import build_classifier

    trainable = 0 if config.freeze else config.fine_tune
    # Built and compiled inside the scope: its variables and optimizer state live on every
    # replica, and the policy gives the layers their 16-bit compute (the softmax stays float32).
    with runtime.precision_scope(precision), strategy.scope():
        model = build_classifier(config.model, config.image_size, config.channels,
                                 len(splits.class_names), weights=config.weights,
                                 trainable_layers=trainable, learning_rate=config.learning_rate)
        if strategy.num_replicas_in_sync > 1:
            runtime.synchronize_batch_norm(model)
    return model


@dataclass
class _Fit:
    """What fitting left: the whole history (a resumed run's earlier epochs first), where it
    started, how long it took and the class weights of its loss."""

    history: dict[str, list[float]]
    initial_epoch: int
    train_seconds: float
    class_weights: dict[int, float] | None


def _fit(model, config: ClassifierConfig, splits: Splits, out: Path, val_ds,
         verbose: int) -> _Fit:
    """Fit with the run's callbacks, from the backup's epoch when resuming."""
    from keras_ganaug.classify.backup import TrainingBackup
    from keras_ganaug.io import trim_history

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
    # A run resumed after its last epoch trains none: its whole history is the earlier one.
    latest = {k: [float(v) for v in values] for k, values in history.history.items()}
    history_dict = {k: earlier.get(k, []) + latest.get(k, []) for k in {**earlier, **latest}}
    return _Fit(history_dict, initial_epoch, train_seconds, weights)


def _keep_last_model_if_none_was_best(model, out: Path) -> None:
    """No epoch reached --min-epochs, so early stopping chose none: the model evaluated is the
    last epoch's, and best.keras must be that model."""
    if not (out / "best.keras").is_file():
        tmp = out / f".tmp-{os.getpid()}.keras"
        model.save(tmp)
        os.replace(tmp, out / "best.keras")


def _tune_decision(model, config: ClassifierConfig, splits: Splits, val_ds,
                   weights: dict[int, float] | None) -> dict:
    """The decision threshold chosen on the validation split, given the prior the loss saw."""
    from keras_ganaug.metrics.classification import tune_decision

    minority_index = splits.class_names.index(splits.minority)
    return tune_decision(splits.y_val, model.predict(val_ds, verbose=0), minority_index,
                         effective_priors(splits.y_train, len(splits.class_names), weights),
                         seed=config.seed)


def _result(config: ClassifierConfig, splits: Splits, fit: _Fit, model, scores,
            decision: dict) -> dict:
    """metrics.json's scores, counts and epochs (precision, timings, versions and figures are
    added by the caller, in that order)."""
    from keras_ganaug.classify.selection import MONITORS, best_epoch
    from keras_ganaug.metrics.classification import classification_metrics, decide, tuned_metrics

    metrics = classification_metrics(splits.y_test, scores, splits.class_names, splits.minority)
    val_loss = fit.history.get("val_loss", [])
    chosen = best_epoch(fit.history, config.monitor, config.min_epochs)
    return {
        **metrics,
        "seed": config.seed,
        "config": asdict(config),
        "train_counts": splits.counts("train"),
        "val_counts": splits.counts("val"),
        "test_counts": splits.counts("test"),
        "generators": splits.generators,
        "skipped_images": splits.skipped_images,
        "converted_modes": splits.converted_modes,
        "resumed_from_epoch": fit.initial_epoch,
        "upscale": sorted({g["resize"] for g in splits.generators}),
        "class_weights": fit.class_weights,
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
        "best_monitor_value": (fit.history[MONITORS[config.monitor][0]][chosen - 1]
                               if chosen else None),
        "best_val_loss": float(val_loss[chosen - 1]) if chosen and val_loss else None,
        "history": fit.history,
        "parameters": int(model.count_params()),
    }


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"keras_ganaug": __version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version()}


def _draw_figures(history: dict, splits: Splits, scores, confusion, out: Path,
                  final_out: Path) -> dict[str, str]:
    """Learning curves, ROC and confusion matrix in `out`, named by where they will be once a
    staged --overwrite has replaced OUT (`final_out`)."""
    from keras_ganaug.plots import plot_confusion_matrix, plot_learning_curves, plot_roc

    figures = {
        "learning_curves": plot_learning_curves(history, out / "learning_curves.png"),
        "roc": plot_roc(splits.y_test, scores, splits.class_names, out / "roc.png"),
        "confusion_matrix": plot_confusion_matrix(confusion, splits.class_names,
                                                  out / "confusion_matrix.png"),
    }
    return {name: str(final_out / Path(path).relative_to(out)) for name, path in figures.items()}

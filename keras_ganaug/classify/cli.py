"""Train a classifier on real images, optionally plus a GAN's synthetic minority, and score it.

    python train_classifier.py --model cnn5 --n-real 20 --image-size 64 --out runs/real
    python train_classifier.py --model cnn5 --n-real 20 --image-size 64 \\
        --generator runs/gan --synthetic balance --out runs/augmented

Writes OUT/metrics.json (accuracy, balanced accuracy, ROC AUC, per-class P/R/F1, confusion matrix,
real and synthetic training counts, every flag), learning_curves.png, roc.png, confusion_matrix.png,
best.keras, history.csv and TensorBoard logs under OUT/logs.

The console script keras-ganaug-train-classifier and train_classifier.py of a checkout both run
main(): flags -> ClassifierConfig -> keras_ganaug.classify.training.run.
"""

from __future__ import annotations

import argparse

from keras_ganaug import runtime
from keras_ganaug.classify.augment import AUGMENT_MODES
from keras_ganaug.classify.config import SYNTHETIC_CLASSES, ClassifierConfig
from keras_ganaug.classify.models import MODELS
from keras_ganaug.classify.selection import DEFAULT_MIN_EPOCHS, DEFAULT_MONITOR, MONITORS
from keras_ganaug.cli_helpers import (
    ArgumentParser,
    add_common_flags,
    config_from_flags,
    quiet_tensorflow,
    run_cli,
)
from keras_ganaug.data.images import DEFAULT_VAL_FRACTION, RESIZE_MODES


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__.splitlines()[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="demo",
                   help="image-folder root (ROOT/{train,test}/CLASS/*), tfds:NAME, or demo")
    p.add_argument("--minority", help="minority class (default: fewest train images)")
    p.add_argument("--n-real", type=int,
                   help="cut the minority's train images to N (same files as train_gan.py)")
    p.add_argument("--model", default="cnn5", choices=MODELS)
    p.add_argument("--weights",
                   help="transfer models: imagenet (default), none, or a no-top weights file PATH")
    tune = p.add_mutually_exclusive_group()
    tune.add_argument("--freeze", action="store_true",
                      help="transfer models: keep the backbone fixed, train the new head only")
    tune.add_argument("--fine-tune", type=int, metavar="K",
                      help="transfer models: train only the backbone's last K layers")
    p.add_argument("--augment", default="none", choices=AUGMENT_MODES)
    p.add_argument("--superpixel-p", type=float, default=0.5,
                   help="probability that one SLIC segment becomes its mean colour")
    p.add_argument("--superpixel-segments", type=int, default=64, help="SLIC segments per image")
    p.add_argument("--generator", action="append", default=[], metavar="PATH",
                   help="generator export of train_gan.py (repeatable; the count is split evenly)")
    p.add_argument("--synthetic", metavar="balance|COUNT|REAL:SYNTH|P%",
                   help="how many fakes: balance (fill up to the largest class, the default with "
                        "--generator), a count, a ratio like 1:2, or a share like 20%% of the "
                        "real training split")
    p.add_argument("--oversample", action="store_true",
                   help="repeat real images instead of generating them, as many as --synthetic "
                        "asks for: the non-GAN twin of a GAN run")
    p.add_argument("--synthetic-classes", default="minority", choices=SYNTHETIC_CLASSES,
                   help="all: every class gets the same share of fakes (or repeats) per real "
                        "image, so looking generated predicts no label")
    p.add_argument("--vet", action="store_true",
                   help="generate more and keep the fakes the discriminator scores most real")
    p.add_argument("--vet-keep", type=float, default=0.5, help="fraction kept by --vet")
    p.add_argument("--upscale", default="bicubic",
                   help="for generators smaller than --image-size: bicubic or a "
                        "super-resolution SavedModel PATH")
    p.add_argument("--class-weights", action="store_true",
                   help="weight the loss by sklearn's balanced class weights")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="stratified validation fraction of the real train images (the same "
                        "files train_gan.py holds out for the same --n-real and --seed)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    p.add_argument("--monitor", default=DEFAULT_MONITOR, choices=tuple(MONITORS),
                   help="what early stopping and best.keras watch: val ROC AUC, the "
                        "class-balanced val loss, or the plain val loss (prior-dominated); "
                        "last: no early stopping, every epoch trained and the last one kept")
    p.add_argument("--min-epochs", type=int, default=DEFAULT_MIN_EPOCHS,
                   help="epochs trained before early stopping may choose or stop")
    p.add_argument("--drop-test-duplicates", action="store_true",
                   help="score without test images byte-identical to a training image or to a "
                        "generator's training file (listed in metrics.json)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float,
                   help="Adam learning rate (default 1e-3 small CNNs, 1e-4 transfer models)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--resize", default="crop", choices=RESIZE_MODES,
                   help="how non-square images are made square")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="same seed, same bits on GPUs too (TensorFlow op determinism; slower)")
    runtime.add_flags(p, "float32", "; bench/RESULTS.md says which models bfloat16 speeds up")
    p.add_argument("--out", help="output folder (default runs/<model>-<minority>-...)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (same flags; --epochs may grow)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave unreadable images out instead of stopping")
    add_common_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> ClassifierConfig:
    return config_from_flags(ClassifierConfig, args, generators=args.generator)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    if args.deterministic:  # see README, Reproducibility
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    from keras_ganaug.classify.training import run

    result = run(config_from_args(args), verbose=0 if args.quiet else 1)
    auc = "n/a" if result["roc_auc"] is None else f"{result['roc_auc']:.3f}"
    tuned = result["val_tuned"]
    print(f"{result['config']['out']}: AUC {auc}; argmax: accuracy {result['accuracy']:.3f}  "
          f"balanced accuracy {result['balanced_accuracy']:.3f}  {result['minority']} recall "
          f"{result['minority_recall']:.3f}; val-tuned threshold: accuracy "
          f"{tuned['accuracy']:.3f}  balanced accuracy {tuned['balanced_accuracy']:.3f}  "
          f"{result['minority']} recall {tuned['minority_recall']:.3f}  "
          f"(best epoch {result['best_epoch']} by {result['monitor']}, seed {result['seed']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)

"""Train a GAN on the minority class of an image set and export its generator as a SavedModel.

    python train_gan.py                                   # DCGAN on the built-in demo data
    python train_gan.py --data DIR --class malignant --n-real 100 --image-size 64 --kimg 40

The console script keras-ganaug-train-gan and train_gan.py of a checkout both run main(): flags
-> GANConfig -> keras_ganaug.gans.training.run.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from keras_ganaug import runtime
from keras_ganaug.cli_helpers import (
    ArgumentParser,
    add_common_flags,
    config_from_flags,
    positive_int,
    quiet_tensorflow,
    run_cli,
)
from keras_ganaug.data.images import DEFAULT_VAL_FRACTION
from keras_ganaug.gans.config import GANConfig, check_config, choose_recipe
from keras_ganaug.gans.recipes import (
    AUTO_RECIPE,
    DEFAULT_KIMG,
    DEFAULT_RECIPE,
    FEWSHOT_BELOW_N,
    FEWSHOT_RECIPE,
    MANY_SHOT_RECIPE,
    RECIPE_CHOICES,
    TODAY,
    Recipe,
    resolve_recipe,
)
from keras_ganaug.gans.registry import AUGMENT_KINDS, DEFAULT_GAN, GAN_NAMES, GAN_OPTIONS


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="image-folder root ROOT/{train,test}/CLASS/* or tfds:NAME[:SPLIT]"
                   " (default: the built-in demo set, written to data/demo)")
    p.add_argument("--class", "--minority", dest="class_name",
                   help="class to learn; for conditional GANs the class --n-real cuts\n"
                   "(default: the one with the fewest train images)")
    p.add_argument("--gan", default=DEFAULT_GAN,
                   help=f"one of {', '.join(GAN_NAMES)} (default {DEFAULT_GAN}: learns every "
                        f"class, --class among them)")
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional variant (wgan-gp); trains on every class")
    p.add_argument("--n-critic", type=positive_int,
                   help="wgan-gp: critic steps per generator step (default 5)")
    p.add_argument("--gp-weight", type=float, help="wgan-gp: gradient penalty weight (default 10)")
    p.add_argument("--cat-codes", type=int,
                   help="infogan: values of the categorical code (default 4)")
    p.add_argument("--cont-codes", type=int, help="infogan: continuous codes (default 2)")
    p.add_argument("--n-real", type=int, help="cut the class to N real images, chosen by --seed "
                   "(default: all)")
    p.add_argument("--image-size", type=int, default=64, help="32, 64, 128 or 256 (default 64)")
    p.add_argument("--channels", type=int, default=3, help="1 or 3 (default 3)")
    p.add_argument("--resize", default="crop", help="crop (centre square, default) or pad")
    p.add_argument("--epochs", type=positive_int,
                   help="passes over the training images (replaces --kimg)")
    p.add_argument("--kimg", type=float,
                   help="budget in thousands of real images shown to the discriminator, the same "
                        f"for every --n-real (default {DEFAULT_KIMG:g}; batches keep --batch-size; "
                        "replaces --epochs)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="with --epochs capped at the number of training images")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="hold out this stratified fraction of each class, the validation split "
                        "train_classifier.py draws for the same --n-real and --seed (0: none)")
    p.add_argument("--drop-test-duplicates", action="store_true",
                   help="leave out training images byte-identical to a test image")
    p.add_argument("--latent-dim", type=positive_int, default=128)
    p.add_argument("--width", type=positive_int,
                   help="filters of the first D / last G layer; doubles per stage up to 512 "
                        f"(default {TODAY['width']})")
    p.add_argument("--augment",
                   help=f"{', '.join(AUGMENT_KINDS)}: differentiable augmentation for few-shot "
                        f"training (default none)")
    recipes = p.add_argument_group(
        "recipe", "a named bundle of the options below (keras_ganaug/gans/recipes.py); a flag "
        "given explicitly wins over the recipe")
    recipes.add_argument("--recipe", default=DEFAULT_RECIPE, choices=RECIPE_CHOICES,
                         help=f"default {AUTO_RECIPE}: {FEWSHOT_RECIPE} below --n-real "
                              f"{FEWSHOT_BELOW_N}, {MANY_SHOT_RECIPE} (the DCGAN) from "
                              f"{FEWSHOT_BELOW_N} (the recipe search's finding, "
                              f"docs/results/gan_recipes)")
    for option in fields(Recipe):  # every recipe option is a flag, default None: the recipe's
        recipes.add_argument("--" + option.name.replace("_", "-"), **option.metadata)
    recipes.add_argument("--init-from", metavar="RUN",
                         help="start the networks from an earlier train_gan.py run (e.g. one on "
                              "the majority class) and fine-tune them on these images")
    recipes.add_argument("--freeze-d-blocks", type=int, metavar="K",
                         help="with --init-from: keep the discriminator's first K conv blocks as "
                              "pretrained (FreezeD; default 0)")
    p.add_argument("--ema", type=float, default=0.999,
                   help="EMA decay of the exported generator; 0 exports the raw generator")
    p.add_argument("--seed", type=int, default=0, help="fixes subset, initialisation and noise")
    p.add_argument("--deterministic", action="store_true",
                   help="same seed, same bits on GPUs too (TensorFlow op determinism; slower)")
    p.add_argument("--out", help="output folder (default saved_models/<gan>_<class>_n<N>)")
    p.add_argument("--sample-every", type=positive_int,
                   help="epochs between sample grids (default: epochs/10)")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="epochs between SavedModel snapshots in OUT/snapshots (default 0: off)")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="steps between extra checkpoints inside an epoch, for long epochs\n"
                   "(default 0: checkpoints at epoch ends only)")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0,
                   help="without --checkpoint-every: epoch-end checkpoints at most this often\n"
                   "(default 60; 0: at every epoch end; the last epoch is always saved)")
    runtime.add_flags(p)
    p.add_argument("--steps-per-execution", type=positive_int, default=1,
                   help="train steps per call into TensorFlow (default 1)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out unreadable images instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    add_common_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> GANConfig:
    given = tuple(option for option in GAN_OPTIONS if getattr(args, option) is not None)
    # An option of another GAN that was not given keeps its default; check_config refuses the rest.
    config = config_from_flags(GANConfig, args, ema=args.ema or None,
                               keep_defaults=set(GAN_OPTIONS) - set(given),
                               verbose=0 if args.quiet else 1)
    config = choose_recipe(config)  # --recipe auto: by N, which a folder listing gives
    check_config(config, given)
    return resolve_recipe(config)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    quiet_tensorflow()
    if args.deterministic:  # see README, Reproducibility
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    from keras_ganaug.gans.training import run

    summary = run(config)
    rate = summary["images_per_second"]
    print(f"generator: {summary['generator']}  ({summary['epochs']} epochs, "
          f"{summary['kimg']:.1f} kimg, "
          f"{summary['train_seconds']:.0f} s" + (f", {rate:.0f} img/s)" if rate else ")"))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)

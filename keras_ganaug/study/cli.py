"""The study in one command: real-minority counts x methods x seeds -> results.csv, summary, report.

    python -m keras_ganaug.study --data DIR --minority malignant --n-real 50,200,all \\
        --methods real,classic,dcgan --seeds 3 --image-size 64 --out runs/study

A cell is one (N, method, synthetic ratio, seed): a classifier trained on N real minority images
(plus whatever the method adds) and measured on the untouched test split. The rules every method
goes through, so the procedure favours none: one validation split per (N, seed), drawn from the
file listing before anything trains and held out of every GAN (images.split_validation, checked by
hash); early stopping on the val ROC AUC and the decision threshold tuned on val (selection.py,
classification.tune_decision); every GAN the same budget in images shown (--gan-kimg); the extra
images of a GAN method and of its non-GAN twin `oversample` counted by one rule
(classify/config.extra_counts). Each generator is trained once per (GAN, GAN augmentation, N,
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
  feature_extractor/    SimCLR encoder trained on every real training image: the quality feature space
  leakage.json          test-vs-train and generator hash checks
  results.csv summary.csv report.md figures/   (remade by --report-only)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_ganaug.classify.selection import DEFAULT_MIN_EPOCHS, DEFAULT_MONITOR, MONITORS
from keras_ganaug.cli_helpers import (
    ArgumentParser,
    add_common_flags,
    config_from_flags,
    quiet_tensorflow,
    run_cli,
)
from keras_ganaug.data.images import DEFAULT_VAL_FRACTION
from keras_ganaug.errors import UserError
from keras_ganaug.gans.recipes import DEFAULT_RECIPE, RECIPE_CHOICES
from keras_ganaug.study.grid import (
    DEFAULT_GAN_KIMG,
    DEFAULT_METHODS,
    DEFAULT_N_REAL,
    DEFAULT_SEEDS,
    DEFAULT_SYNTHETIC,
    StudyConfig,
    method_grammar,
    parse_n_real,
    parse_shard,
    parse_synthetic_list,
)
from keras_ganaug.study.records import COMMAND, write_results
from keras_ganaug.study.runner import run_study


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=COMMAND, description=__doc__,  # flag errors: one line, exit 2
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="image-folder root ROOT/{train,test}/CLASS/* (default: demo)")
    p.add_argument("--minority", help="class cut to N and synthesized (default: fewest images)")
    p.add_argument("--n-real", default=DEFAULT_N_REAL,
                   help=f"real minority counts, comma-separated, 'all' = every image "
                        f"(default {DEFAULT_N_REAL})")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated: {method_grammar()} (default {DEFAULT_METHODS})")
    p.add_argument("--synthetic", default=DEFAULT_SYNTHETIC,
                   help="the ratio axis, comma-separated: extra images per GAN or oversample "
                        "cell as balance, COUNT, REAL:SYNTHETIC or P%% of the real training "
                        f"split, e.g. balance,1:1,20%% (default {DEFAULT_SYNTHETIC})")
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
    p.add_argument("--gan-recipe", default=DEFAULT_RECIPE, choices=RECIPE_CHOICES,
                   help=f"train_gan.py's --recipe for every GAN cell (default {DEFAULT_RECIPE}: "
                        "the recipe for each cell's N)")
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
    add_common_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    return config_from_flags(
        StudyConfig, args, n_real=parse_n_real(args.n_real),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        synthetic=parse_synthetic_list(args.synthetic),
        gan_kimg=None if args.gan_epochs else args.gan_kimg, quality=not args.no_quality,
        shard=parse_shard(args.shard), verbose=0 if args.quiet else 1)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(silent=args.quiet)
    if args.report_only:
        from keras_ganaug.study.report import write_report

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

"""How good one exported generator is, offline: KID, precision / recall, memorization and C2ST.

    python -m keras_ganaug.metrics.generator GENERATOR REAL_FOLDER [--features PATH] [--count N]
                                             [--seed S] [--out quality.json]
    keras-ganaug-quality saved_models/cgan_malignant_n100 ../shared/data/skin_cancer/test/malignant \\
        --features saved_models/features_skin64.keras

REAL_FOLDER holds real images of the generator's class that it never trained on (the test split's
folder of that class is the natural choice); they are checked against the generator's training
files. The images it did train on come from GENERATOR/training_files.json. Measures are computed in
the SimCLR feature space of keras_ganaug.metrics.features; --features PATH loads it, or trains it on
every image of the generator's training split (all classes, never the test split) and saves it
there, so later runs reuse it. The measures themselves are metrics/measures.py (image_measures
puts them together: the study calls it too); measure_generator draws an export's fakes for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from keras_ganaug.cli_helpers import ArgumentParser, add_common_flags, quiet_tensorflow, run_cli
from keras_ganaug.data.trained import TRAINING_FILES, TrainedFiles, files_set, read_trained_files
from keras_ganaug.errors import UserError
from keras_ganaug.metrics.c2st import C2ST_EPOCHS
from keras_ganaug.metrics.features import FEATURE_EPOCHS
from keras_ganaug.metrics.measures import MIN_IMAGES, image_measures


def measure_generator(generator_folder: str | os.PathLike, real_unseen_images: np.ndarray,
                      train_images_seen: np.ndarray, features_model, seed: int = 0,
                      count: int | None = None, class_id: int = -1,
                      c2st_epochs: int = C2ST_EPOCHS) -> dict:
    """Draw `count` fakes (default: as many as the unseen reals) of `class_id` from an export with
    `seed`, and measure them with image_measures; the seed is part of the result."""
    from keras_ganaug.synthesize import synthesize

    count = len(real_unseen_images) if count is None else count
    fakes = synthesize(generator_folder, count, seed=seed, class_id=class_id)
    return image_measures(fakes, real_unseen_images, train_images_seen, features_model, seed=seed,
                          c2st_epochs=c2st_epochs)


def _load(files: list[str], source: str, metadata: dict) -> np.ndarray:
    """Decode files at the generator's size, channels and resize mode."""
    from keras_ganaug.data.images import ImageSet, load_images

    images = ImageSet(("images",), tuple(files), np.zeros(len(files), np.int32), source=source)
    return load_images(images, int(metadata["image_size"]), int(metadata["channels"]),
                       resize_mode=metadata.get("resize", "crop"))[0]


def generator_class(metadata: dict, class_name: str | None) -> tuple[str, int]:
    """(class name, class_id for synthesize) of the images to measure."""
    names = list(metadata.get("class_names") or [])
    if not metadata.get("conditional"):
        trained = metadata.get("trained_class")
        if class_name not in (None, trained):
            raise UserError(f"--class {class_name}: this generator was trained on {trained!r} only")
        return trained, -1
    class_name = class_name or metadata.get("minority_class")
    if class_name not in names:
        raise UserError(f"--class {class_name}: expected one of {', '.join(names)}")
    return class_name, names.index(class_name)


def seen_training_files(trained: TrainedFiles, class_name: str) -> list[str]:
    """The files of `class_name` the generator trained on, checked to be still there."""
    files = trained.paths(class_name)
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise UserError(f"{missing[0]}: a training image listed in {trained.run / TRAINING_FILES} "
                        f"is gone ({len(missing)} of {len(files)} missing); memorization needs "
                        f"them")
    return files


def unseen_real_files(real_folder: str | os.PathLike, trained: TrainedFiles) -> list[str]:
    """Images of REAL_FOLDER, checked to be none of the generator's training images (by bytes)."""
    from keras_ganaug.data.images import image_files

    folder = Path(real_folder)
    if not folder.is_dir():
        raise UserError(f"REAL_FOLDER {folder}: no such directory")
    files = image_files(folder)
    if len(files) < MIN_IMAGES:
        raise UserError(f"REAL_FOLDER {folder}: {len(files)} images, at least {MIN_IMAGES} needed")
    seen = trained.seen(files_set(files, str(folder)))
    if seen:
        raise UserError(f"REAL_FOLDER {folder}: {len(seen)} images (e.g. {seen[0]}) are images the "
                        f"generator trained on; give real images it never saw, e.g. DATA/test/CLASS")
    return files


def feature_space(path: str | None, metadata: dict, seed: int, epochs: int, verbose: bool):
    """Load the encoder at `path`, or train it on the generator's training split (saved to `path`)."""
    from keras_ganaug.data.images import list_images, load_images
    from keras_ganaug.metrics import features

    if path and Path(path).is_file():
        return features.load_feature_space(path)
    if path and Path(path).suffix != ".keras":
        raise UserError(f"--features {path}: expected a .keras file name")
    try:
        train = list_images(metadata["data"], "train")
    except UserError as err:
        raise UserError(f"training the feature space on the generator's data ({err}); run from "
                        f"where train_gan.py ran, or give --features PATH of a trained one") from err
    images = load_images(train, int(metadata["image_size"]), int(metadata["channels"]),
                         resize_mode=metadata.get("resize", "crop"))[0]
    if verbose:
        print(f"training the feature space on {len(images)} images of {train.source}"
              + (f" -> {path}" if path else " (not saved: give --features PATH to keep it)"))
    encoder, _ = features.train_feature_space(images, seed=seed, epochs=epochs)
    if path:
        features.save_feature_space(encoder, path)
    return encoder


def summary(result: dict) -> str:
    """The numbers of quality.json as a few readable lines."""
    return "\n".join([
        f"{result['fakes']} fakes vs {result['real_unseen']} unseen real images; "
        f"{result['train_seen']} training images (seed {result['seed']})",
        f"KID           {result['kid']:.4f} +- {result['kid_std']:.4f} "
        f"(subsets of {result['kid_subset_size']})",
        f"precision     {result['precision']:.3f}  recall {result['recall']:.3f} "
        f"(k={result['nearest_k']}, {result['pr_samples']} per set)",
        f"memorization  ratio {result['memorization_ratio']:.3f} (1: as near the training images as "
        f"unseen reals, 0: copies); {100 * result['memorized_fraction']:.1f} % of fakes nearer "
        f"than the nearest 5 % of unseen reals",
        f"C2ST AUC      {result['c2st_auc']:.3f} +- {result['c2st_auc_std']:.3f} "
        f"({result['c2st_folds']}-fold; 0.5: indistinguishable, 1: told apart)"])


def build_parser() -> argparse.ArgumentParser:
    def whole(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None

    p = ArgumentParser(prog="python -m keras_ganaug.metrics.generator", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", metavar="GENERATOR", help="folder written by train_gan.py")
    p.add_argument("real_folder", metavar="REAL_FOLDER",
                   help="real images of the class the generator never saw (e.g. DATA/test/CLASS)")
    p.add_argument("--class", dest="class_name",
                   help="class to draw from a conditional generator (default: its minority class)")
    p.add_argument("--features", help="feature encoder .keras file: loaded, or trained and saved "
                   "there when missing (default: trained, not saved)")
    p.add_argument("--feature-epochs", type=whole, default=FEATURE_EPOCHS,
                   help=f"epochs when training the feature space (default {FEATURE_EPOCHS})")
    p.add_argument("--count", type=whole,
                   help="fakes to draw (default: as many as REAL_FOLDER has images)")
    p.add_argument("--seed", type=whole, default=0, help="fakes, subsets and C2ST folds (default 0)")
    p.add_argument("--out", help="JSON to write (default GENERATOR/quality.json)")
    add_common_flags(p)
    return p


def _main(argv: list[str] | None) -> int:
    from keras_ganaug import __version__
    from keras_ganaug.io import write_json_atomic

    args = build_parser().parse_args(argv)
    quiet_tensorflow()  # before export's import: its start-up chatter would break one-line errors
    from keras_ganaug.gans.export import generator_dir, load_metadata
    if args.count is not None and args.count < MIN_IMAGES:
        raise UserError(f"--count {args.count}: expected at least {MIN_IMAGES}")
    if args.feature_epochs < 1:
        raise UserError(f"--feature-epochs {args.feature_epochs}: expected 1 or more")
    metadata = load_metadata(args.generator)
    run_dir = generator_dir(args.generator).parent
    class_name, class_id = generator_class(metadata, args.class_name)
    trained = read_trained_files(run_dir, metadata, need_listing=True)
    real_files = unseen_real_files(args.real_folder, trained)
    seen_files = seen_training_files(trained, class_name)
    out = Path(args.out) if args.out else run_dir / "quality.json"
    encoder = feature_space(args.features, metadata, args.seed, args.feature_epochs,
                            not args.quiet)
    result = measure_generator(args.generator, _load(real_files, args.real_folder, metadata),
                               _load(seen_files, TRAINING_FILES, metadata), encoder,
                               seed=args.seed, count=args.count, class_id=class_id)
    record = {**result, "generator": str(args.generator), "class": class_name,
              "real_folder": str(args.real_folder), "features": args.features,
              "package_version": __version__}
    try:
        write_json_atomic(out, record)
    except OSError as err:
        raise UserError(f"--out {out}: could not write ({err.strerror or err})") from err
    if not args.quiet:
        print(summary(result))
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

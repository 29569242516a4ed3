"""The main job on the built-in demo data: train a GAN, then a classifier with and without its images.

    keras-ganaug-demo            (or: python -m keras_ganaug.demo_job)

It shows the whole path a user walks (demo data -> DCGAN -> SavedModel -> synthetic minority ->
classifier -> metrics) and prints the three classifiers side by side: real images only, real images
with balanced class weights (the non-GAN baseline every GAN must beat), and real images plus the
generator's images filling the minority up to the majority count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_ganaug.errors import quiet_tensorflow, run_cli

ARMS = {
    "real only": {},
    "class weights": {"class_weights": True},
    "real + DCGAN": {"synthetic": "balance"},
}


def run_demo_job(out: str = "runs/demo", gan_epochs: int = 150, epochs: int = 30,
                 image_size: int = 64, seed: int = 0, verbose: int = 1) -> dict[str, dict]:
    """Train the demo GAN and the three classifiers; returns {arm: metrics dict}."""
    from keras_ganaug.classifier_training import ClassifierConfig
    from keras_ganaug.classifier_training import run as train_classifier
    from keras_ganaug.demo import make_demo_data
    from keras_ganaug.gan_training import GANConfig
    from keras_ganaug.gan_training import run as train_gan

    out_dir = Path(out)
    data = str(make_demo_data())
    gan = train_gan(GANConfig(data=data, gan="dcgan", image_size=image_size, epochs=gan_epochs,
                              batch_size=20, augment="diffaugment", seed=seed,
                              out=str(out_dir / "gan"), overwrite=True, verbose=verbose))
    results = {}
    for arm, flags in ARMS.items():
        generators = [gan["out"]] if "synthetic" in flags else []
        config = ClassifierConfig(data=data, model="cnn5", image_size=image_size, seed=seed,
                                  epochs=epochs,
                                  generators=generators, out=str(out_dir / arm.replace(" ", "_")
                                                                  .replace("+", "plus")),
                                  overwrite=True, **flags)
        results[arm] = train_classifier(config, verbose=verbose)
    return results


def format_table(results: dict[str, dict]) -> str:
    """The arms side by side: accuracy, balanced accuracy, ROC AUC, minority recall, fakes used."""
    header = f"{'':16}{'accuracy':>10}{'bal. acc':>10}{'ROC AUC':>10}{'min. recall':>13}{'fakes':>7}"
    lines = [header]
    for arm, m in results.items():
        fakes = sum(m["train_counts"]["synthetic"].values())
        auc = f"{m['roc_auc']:.3f}" if m["roc_auc"] is not None else "n/a"
        lines.append(f"{arm:16}{m['accuracy']:>10.3f}{m['balanced_accuracy']:>10.3f}{auc:>10}"
                     f"{m['minority_recall']:>13.3f}{fakes:>7}")
    return "\n".join(lines)


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder (replaced on each run)")
    p.add_argument("--gan-epochs", type=int, default=150)
    p.add_argument("--epochs", type=int, default=30, help="classifier epochs (early stopping)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    quiet_tensorflow()
    results = run_demo_job(args.out, args.gan_epochs, args.epochs, args.image_size, args.seed,
                           verbose=0 if args.quiet else 1)
    minority = next(iter(results.values()))["minority"]
    print(f"\nDemo test split, minority class {minority!r}, cnn5 at {args.image_size} px, "
          f"seed {args.seed}:")
    print(format_table(results))
    print(f"Generator: {Path(args.out) / 'gan' / 'generator'}; metrics: {args.out}/*/metrics.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

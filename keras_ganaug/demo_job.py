"""The main job on the built-in demo data: train a GAN, then a classifier with and without its images.

    keras-ganaug-demo            (or: python -m keras_ganaug.demo_job)

It shows the whole path a user walks (demo data -> DCGAN -> SavedModel -> synthetic minority ->
classifier -> metrics) and prints four classifiers side by side: real images only, real images with
balanced class weights and real images with the minority oversampled and classic augmentation (the
non-GAN baselines every GAN must beat), and real images plus the generator's images filling the
minority up to the majority count. Before the classifiers, the generator's fakes are checked
against the test split's minority images, which it never saw: a classifier two-sample test (C2ST,
printed) and a figure of both side by side (OUT/gan/real_vs_fake.png). The study's rules hold here
too: the GAN trains on the same cut and seed as the classifiers with their validation images held
out, model selection watches the val ROC AUC, and the printed decisions are at the threshold each
run tuned on its val split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_ganaug.cli_helpers import (
    ArgumentParser,
    add_common_flags,
    positive_int,
    quiet_tensorflow,
    run_cli,
)

# The demo GAN's budget: what keeps the whole job within 6 minutes on 2 CPU cores (train_gan.py's
# DEFAULT_KIMG, 65, would take the GAN alone about 5).
DEMO_GAN_KIMG = 40.0
# Not train_gan.py's default (auto: fastgan for the demo's 60 malignant images). fastgan trains
# at about half the DCGAN's images per second here, so 6 minutes leave it 20 kimg, after which its
# fakes are still blurred (C2ST 0.997; job 8 min 22 s beside other work, 2026-12-05,
# docs/results/gan_recipes/README.md). Nor today's DCGAN recipe: on these 48 training images its
# discriminator memorizes the set early (D loss .008 by step 100) and every fake comes out on one
# peach background. DiffAugment's color + translation keeps the backgrounds, borders and colours
# varied (C2ST 0.98 at 40 kimg; stage 4 of that README).
DEMO_GAN_RECIPE = "diffaugment-ct"
ARMS = {
    "real only": {},
    "class weights": {"class_weights": True},
    "oversample+classic": {"oversample": True, "synthetic": "balance", "augment": "classic"},
    "real + DCGAN": {"synthetic": "balance"},
}


def run_demo_job(out: str = "runs/demo", gan_kimg: float = DEMO_GAN_KIMG, epochs: int = 30,
                 image_size: int = 64, seed: int = 0,
                 verbose: int = 1) -> tuple[dict[str, dict], dict]:
    """Train the demo GAN, check its fakes (check_fakes) and train the four classifiers;
    returns ({arm: metrics dict}, the fakes' check)."""
    from keras_ganaug.classify.config import ClassifierConfig
    from keras_ganaug.classify.training import run as train_classifier
    from keras_ganaug.data.demo import make_demo_data
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run as train_gan

    out_dir = Path(out)
    data = str(make_demo_data())
    gan = train_gan(GANConfig(data=data, gan="dcgan", recipe=DEMO_GAN_RECIPE,
                              image_size=image_size, kimg=gan_kimg, seed=seed,
                              out=str(out_dir / "gan"), overwrite=True, verbose=verbose))
    fakes_check = check_fakes(gan["out"], data, image_size, seed)
    results = {}
    for arm, flags in ARMS.items():
        generators = [gan["out"]] if "synthetic" in flags and "oversample" not in flags else []
        config = ClassifierConfig(data=data, model="cnn5", image_size=image_size, seed=seed,
                                  epochs=epochs,
                                  generators=generators, out=str(out_dir / arm.replace(" ", "_")
                                                                  .replace("+", "plus")),
                                  overwrite=True, **flags)
        results[arm] = train_classifier(config, verbose=verbose)
    return results, fakes_check


GRID_IMAGES = 25  # per side of the real-vs-fake figure


def check_fakes(gan_out: str, data: str, image_size: int, seed: int) -> dict:
    """The generator's fakes against the test split's images of its class, which it never saw:
    a C2ST (a small CNN's cross-validated AUC at telling them apart; 0.5 = it cannot) and a
    figure of the two side by side, OUT/gan/real_vs_fake.png."""
    from keras_ganaug.data.images import list_images, load_images, only_class
    from keras_ganaug.gans.export import load_metadata
    from keras_ganaug.metrics.c2st import c2st
    from keras_ganaug.plots import plot_image_panels
    from keras_ganaug.synthesize import synthesize

    class_name = load_metadata(gan_out)["trained_class"]
    unseen = only_class(list_images(data, "test"), class_name)
    real, _, _, _ = load_images(unseen, image_size, 3)
    fakes = synthesize(Path(gan_out) / "generator", len(real), seed=seed)
    result = {"class": class_name, "real_unseen": len(real), **c2st(fakes, real, seed=seed)}
    result["figure"] = plot_image_panels(
        [(f"real {class_name} (test split, unseen by the GAN)", real[:GRID_IMAGES]),
         ("DCGAN fakes", fakes[:GRID_IMAGES])],
        f"C2ST AUC {result['c2st_auc']:.2f} (0.5 = indistinguishable)",
        Path(gan_out) / "real_vs_fake.png")
    return result


def format_table(results: dict[str, dict]) -> str:
    """The arms side by side at the val-tuned threshold: accuracy, balanced accuracy, ROC AUC,
    minority recall, and the extra images used (fakes or repeats)."""
    header = (f"{'':20}{'accuracy':>10}{'bal. acc':>10}{'ROC AUC':>10}{'min. recall':>13}"
              f"{'extra':>7}")
    lines = [header]
    for arm, m in results.items():
        counts = m["train_counts"]
        extra = sum(counts["synthetic"].values()) + sum(counts.get("oversampled", {}).values())
        auc = f"{m['roc_auc']:.3f}" if m["roc_auc"] is not None else "n/a"
        tuned = m["val_tuned"]
        lines.append(f"{arm:20}{tuned['accuracy']:>10.3f}{tuned['balanced_accuracy']:>10.3f}"
                     f"{auc:>10}{tuned['minority_recall']:>13.3f}{extra:>7}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder (replaced on each run)")
    p.add_argument("--gan-kimg", type=float, default=DEMO_GAN_KIMG,
                   help=f"GAN budget in thousands of real images shown (default "
                        f"{DEMO_GAN_KIMG:g})")
    p.add_argument("--epochs", type=positive_int, default=30,
                   help="classifier epochs (early stopping)")
    p.add_argument("--image-size", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    add_common_flags(p)
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    results, fakes = run_demo_job(args.out, args.gan_kimg, args.epochs, args.image_size,
                                  args.seed, verbose=0 if args.quiet else 1)
    minority = next(iter(results.values()))["minority"]
    print(f"\nDemo test split, minority class {minority!r}, cnn5 at {args.image_size} px, "
          f"seed {args.seed}; decisions at the threshold tuned on each run's validation split "
          f"(which the GAN never saw):")
    print(format_table(results))
    print(f"GAN fakes vs the {fakes['real_unseen']} unseen real {fakes['class']} test images: "
          f"C2ST AUC {fakes['c2st_auc']:.3f} +- {fakes['c2st_auc_std']:.3f} (0.5 = "
          f"indistinguishable, 1 = told apart every time); side by side: {fakes['figure']}")
    print(f"Generator: {Path(args.out) / 'gan' / 'generator'}; metrics: {args.out}/*/metrics.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

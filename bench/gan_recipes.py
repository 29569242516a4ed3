"""Recipe search (issue 15): DCGAN recipes trained for the same wall-clock budget, then measured.

    python bench/gan_recipes.py                                  # every recipe, N = 10,100,500, 15 min
    python bench/gan_recipes.py --recipes today,sn-resize-lecam --n-real 100 --minutes 5
    python bench/gan_recipes.py --rank                           # the two-stage plan below

Each variant (recipe, N, seed) trains DCGAN on the train-part images of --class (the same cut and
validation split as train_gan.py: gans/training.prepare_training_set, build_gan and real_batches)
until --minutes of wall clock are spent, tracing included (TimeBudget: a recipe that is slower per
image shows fewer images, which is the trade the search is about). The EMA generator is exported
and measured with the study's FeatureSpace (keras_ganaug/study/features.py: one SimCLR encoder
trained once per --out on the train split, reused): KID +- std, precision / recall, memorization
and C2ST against the test split's --class images, and TSTR; each JSON names the feature space
(its weights' digest), so rows measured in different spaces are not compared by accident. One
JSON per variant in OUT/results (a finished variant is skipped, so a long search resumes),
OUT/samples/VARIANT.png, and the table OUT/RECIPES.md, remade from every JSON after each variant.

Transfer recipes (transfer-freezed) fine-tune from an ordinary train_gan.py run of the same networks
on --pretrain-class (default benign; train-part images only, so the validation split holds) for
--pretrain-kimg, trained once per (recipe, seed) and reused for every N; that pretraining is not
counted in --minutes, and the table says which rows had it.

--rank: stage 1 trains every --recipes at N = 100 for --rank-minutes (default 5); stage 2 trains
the best three by stage-1 KID (lower is better; ties by C2ST AUC, nearer 0.5 better) at --minutes
for every --n-real. Both stages write to the same folder, so stage 2 reuses stage 1's N = 100 runs
only when the budgets match (the budget is part of the variant's name).

--add-run LABEL=RUN measures a finished train_gan.py run (any flags: a default, an older recipe)
in the same feature space, as row LABEL (JSON results/run_LABEL_nN_sS.json); --compare
LABEL,LABEL draws those runs' fakes beside unseen real images, one figure per (N, seed):

    python bench/gan_recipes.py --n-real 100 --add-run default=saved_models/dcgan_malignant_n100
    python bench/gan_recipes.py --n-real 10,100,500 --compare old,default
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from keras_ganaug.cli_helpers import (  # noqa: E402
    ArgumentParser,
    add_common_flags,
    name_list,
    run_cli,
)
from keras_ganaug.errors import UserError  # noqa: E402
from keras_ganaug.gans.recipes import RECIPE_NAMES  # noqa: E402

DEFAULT_DATA = "../shared/data/skin_cancer"
STEPS_PER_EPOCH = 100  # fit's epochs only pace logging here; the clock ends training
RANK_N, RANK_KEEP = 100, 3
GRID_IMAGES = 36  # per panel of the comparison figures


class TimeBudget(keras.callbacks.Callback):
    """Stops fit once `seconds` of wall clock have passed since training began; counts the real
    images shown to D (batch x D steps per generator step, StyleGAN2-ADA's unit)."""

    def __init__(self, seconds: float, images_per_step: int):
        super().__init__()
        self.seconds, self.images_per_step, self.steps = seconds, images_per_step, 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.elapsed = time.perf_counter() - self.start
        if self.elapsed >= self.seconds:
            self.model.stop_training = True

    @property
    def images_shown(self) -> int:
        return self.steps * self.images_per_step


def variant_name(recipe: str, n_real: int, seed: int, minutes: float) -> str:
    return f"{recipe}_n{n_real}_s{seed}_{minutes:g}min"


def pretrain(args, config) -> str:
    """The earlier run a transfer recipe starts from: an ordinary train_gan.py run of the same
    networks on every train-part image of --pretrain-class for --pretrain-kimg, trained once per
    (recipe, seed) into --work and reused (resumed if a crash cut it short)."""
    from dataclasses import replace

    from keras_ganaug.gans.training import run

    out = Path(args.work) / (f"pretrain_{config.recipe}_{args.pretrain_class}_s{config.seed}_"
                             f"{args.pretrain_kimg:g}kimg")
    print(f"{out.name}: pretraining for {args.pretrain_kimg:g} kimg", flush=True)
    run(replace(config, class_name=args.pretrain_class, n_real=None, kimg=args.pretrain_kimg,
                freeze_d_blocks=0, out=str(out), resume=(out / "run_config.json").is_file()))
    return str(out)


def train_variant(args, recipe: str, n_real: int, seed: int, minutes: float, out: Path):
    """Train one variant for `minutes` and export it into `out` -> (what it trained, the GAN).
    A transfer recipe first gets its earlier run (pretrain), whose time is not in `minutes`."""
    from keras_ganaug import runtime
    from keras_ganaug.data import images as data_lib
    from keras_ganaug.gans.callbacks import StopOnNaN
    from keras_ganaug.gans.config import GANConfig, check_config
    from keras_ganaug.gans.export import export_gan
    from keras_ganaug.gans.recipes import resolve_recipe
    from keras_ganaug.gans.training import build_gan
    from keras_ganaug.gans.training_data import prepare_training_set, real_batches

    config = GANConfig(data=args.data, class_name=args.class_name, gan="dcgan", n_real=n_real,
                       image_size=args.image_size, channels=args.channels,
                       batch_size=args.batch_size, seed=seed, recipe=recipe, verbose=0)
    config = resolve_recipe(config)
    if config.freeze_d_blocks:
        config.init_from = pretrain(args, config)
    check_config(config)
    data = prepare_training_set(config)
    keras.utils.set_random_seed(seed)
    precision = runtime.choose_precision(config.precision)
    with runtime.precision_scope(precision):
        gan = build_gan(config, len(data.images.class_names), data.class_id)
    budget = TimeBudget(minutes * 60, config.batch_size * gan.d_steps)
    nan_guard = StopOnNaN()
    dataset = real_batches(data.arrays, data.labels, config.batch_size, STEPS_PER_EPOCH, seed)
    gan.fit(dataset, epochs=10**6, steps_per_epoch=STEPS_PER_EPOCH, verbose=0,
            callbacks=[nan_guard, budget])
    out.mkdir(parents=True, exist_ok=True)
    data_lib.write_file_list(out / "training_files.json", data.images, seed, n_real,
                             data.class_name,
                             extra={"held_out_files": list(data.held_out.files),
                                    "init_from": config.init_from,
                                    "pretraining_files": data.pretraining_files})
    trained = {"recipe": recipe, "n_real": n_real, "seed": seed, "minutes": minutes,
               "train_seconds": budget.elapsed, "steps": budget.steps,
               "kimg_shown": budget.images_shown / 1000, "training_images": len(data.arrays),
               "precision": precision, "diverged": nan_guard.bad is not None,
               **gan.recipe_info(), "width": config.width, "augment": config.augment,
               "init_from": config.init_from, "freeze_d_blocks": config.freeze_d_blocks}
    export_gan(gan, out, {"class_names": list(data.images.class_names),
                          "trained_class": data.class_name, "minority_class": data.class_name,
                          "n_real": n_real, "seed": seed, "data": data.source,
                          "resize": config.resize, "augment": config.augment,
                          "recipe": recipe, **gan.recipe_info(),
                          "training_files_sha256": list(dict.fromkeys(
                              data_lib.file_hashes(data.images) + data.pretraining_sha256)),
                          "init_from": config.init_from,
                          "steps": budget.steps, "kimg": budget.images_shown / 1000})
    return trained, gan


def write_grid(gan, path: Path) -> None:
    from keras_ganaug.data.images import to_uint8
    from keras_ganaug.plots import image_grid, save_png

    images, _ = gan.generate(36, 1234, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(image_grid(to_uint8(images).numpy()), path)


def run_variants(args, variants: list[tuple[str, int, int, float]], features) -> list[dict]:
    """Train and measure each variant not already in OUT/results; every variant's result."""
    from keras_ganaug.io import write_json_atomic

    out = Path(args.out)
    results = []
    for recipe, n_real, seed, minutes in variants:
        name = variant_name(recipe, n_real, seed, minutes)
        path = out / "results" / f"{name}.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
            continue
        print(f"{name}: training for {minutes:g} min", flush=True)
        run_dir = Path(args.work) / name
        trained, gan = train_variant(args, recipe, n_real, seed, minutes, run_dir)
        write_grid(gan, out / "samples" / f"{name}.png")
        measures = {} if trained["diverged"] else features().measure(run_dir, n_real, seed)
        result = {"variant": name, **trained, **measures, "generator": str(run_dir)}
        write_json_atomic(path, result)
        results.append(result)
        write_table(out)
        keras.backend.clear_session()
    return results


def measure_runs(args, runs: list[tuple[str, str]], features) -> list[dict]:
    """Measure finished train_gan.py runs (LABEL, RUN folder) in the same feature space as the
    variants, so a CLI run with its own flags (a default, an older recipe) sits in the table."""
    from keras_ganaug.gans.export import load_metadata
    from keras_ganaug.io import write_json_atomic

    out = Path(args.out)
    results = []
    for label, run_dir in runs:
        try:
            meta = load_metadata(Path(run_dir))
        except UserError as e:
            raise UserError(f"--add-run {label}={run_dir}: not a finished train_gan.py run "
                            f"({e})") from None
        # A conditional run is measured on the class it was cut for (asked for that class).
        made = meta.get("minority_class" if meta.get("conditional") else "trained_class")
        if made != args.class_name:
            raise UserError(f"--add-run {label}={run_dir}: trained on {made!r}, expected "
                            f"--class {args.class_name}")
        # The measures rebuild the images it saw from (N, seed) and the study's split: a run
        # with another split or size would be scored against the wrong "seen" set.
        wanted = {"val_fraction": features().config.val_fraction, "image_size": args.image_size,
                  "channels": args.channels}
        wrong = {k: meta.get(k) for k, v in wanted.items() if meta.get(k) != v}
        if wrong:
            raise UserError(f"--add-run {label}={run_dir}: trained with {wrong}, the bench "
                            f"measures {wanted}")
        n_real, seed = meta["n_real"], meta["seed"]
        print(f"{label}: measuring {run_dir}", flush=True)
        seconds = meta.get("train_seconds")
        result = {"variant": f"run_{label}", "recipe": label, "n_real": n_real, "seed": seed,
                  "minutes": seconds / 60 if seconds else math.nan, "steps": meta["steps"],
                  "kimg_shown": meta["kimg"], "training_images": meta["training_images"],
                  "augment": meta.get("augment"), "epochs": meta.get("epochs"),
                  "batch_size": meta.get("batch_size"), "train_gan_run": True,
                  **features().measure(Path(run_dir), n_real, seed), "generator": str(run_dir)}
        write_json_atomic(out / "results" / f"run_{label}_n{n_real}_s{seed}.json", result)
        results.append(result)
        write_table(out)
    return results


def write_comparisons(args, labels: list[str], features) -> list[str]:
    """OUT/samples/compare_nN_sS.png for each (N, seed) that every LABEL's --add-run row has:
    unseen real images of --class beside each run's fakes, one panel each, same noise seed."""
    from keras_ganaug.plots import plot_image_panels
    from keras_ganaug.synthesize import synthesize

    out, written = Path(args.out), []
    for n_real in args.n_real:
        for seed in args.seeds:
            rows = [out / "results" / f"run_{label}_n{n_real}_s{seed}.json" for label in labels]
            if not all(p.is_file() for p in rows):
                continue
            space = features()
            real = space.x_test[space.test_labels == space.minority_id][:GRID_IMAGES]
            panels = [(f"real {args.class_name} (test split, unseen)", real)]
            for label, path in zip(labels, rows, strict=True):
                r = json.loads(path.read_text())
                fakes = synthesize(Path(r["generator"]) / "generator", GRID_IMAGES, seed=1234)
                panels.append((f"{label}: KID {_format(r.get('kid'))}, C2ST "
                               f"{_format(r.get('c2st_auc'), 2)}", fakes))
            written.append(plot_image_panels(
                panels, f"{args.class_name}, N = {n_real}, seed {seed}",
                out / "samples" / f"compare_n{n_real}_s{seed}.png"))
    return written


def _or_inf(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _format(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        f"{value:.{digits}f}"


def write_table(out: Path) -> Path:
    """OUT/RECIPES.md from every JSON in OUT/results: one row per variant, by N then KID."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    rows.sort(key=lambda r: (r["n_real"], _or_inf(r["minutes"]), r.get("kid", math.inf),
                             r["seed"]))
    lines = ["# GAN recipe search (bench/gan_recipes.py)", "",
             "Each row: DCGAN with one recipe (keras_ganaug/gans/recipes.py), trained for the "
             "budget in wall-clock minutes on the N train-part images, measured against the test "
             "split's images of the class. KID lower is better; C2ST AUC 0.5 = indistinguishable; "
             "memorization ratio 1 = as near the training images as unseen reals are. Rows "
             "marked train_gan.py run (--add-run) were trained by train_gan.py for their kimg "
             "instead; their minutes are that run's measured training time.", "",
             "| recipe | N | seed | min | kimg shown | KID | KID std | precision | recall | "
             "memorization | C2ST AUC | TSTR/TRTR | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        notes = ((["diverged"] if r.get("diverged") else [])
                 + ([f"pretrained: {Path(r['init_from']).name}"] if r.get("init_from") else [])
                 + (["train_gan.py run (--add-run)"] if r.get("train_gan_run") else []))
        lines.append(
            f"| {r['recipe']} | {r['n_real']} | {r['seed']} | {_format(r['minutes'], 1)} | "
            f"{r['kimg_shown']:.1f} | {_format(r.get('kid'), 4)} | {_format(r.get('kid_std'), 4)} "
            f"| {_format(r.get('precision'))} | {_format(r.get('recall'))} | "
            f"{_format(r.get('memorization_ratio'))} | {_format(r.get('c2st_auc'))} | "
            f"{_format(r.get('tstr_over_trtr'))} | {'; '.join(notes)} |")
    path = out / "RECIPES.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def rank(results: list[dict], keep: int = RANK_KEEP) -> list[str]:
    """The `keep` best recipes: lowest mean KID over seeds, then C2ST AUC nearest 0.5."""
    by_recipe: dict[str, list[dict]] = {}
    for r in results:
        if "kid" in r:
            by_recipe.setdefault(r["recipe"], []).append(r)

    def score(recipe):
        rs = by_recipe[recipe]
        return (sum(r["kid"] for r in rs) / len(rs),
                sum(abs(r["c2st_auc"] - 0.5) for r in rs) / len(rs))

    return sorted(by_recipe, key=score)[:keep]


def build_parser() -> argparse.ArgumentParser:
    def whole_list(text: str) -> list[int]:
        try:
            return [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected whole numbers, got {text!r}") from None

    def labelled_run(text: str) -> tuple[str, str]:
        label, _, run_dir = text.partition("=")
        if not label or not run_dir or not label.replace("-", "").replace("+", "").isalnum():
            raise argparse.ArgumentTypeError(f"expected LABEL=RUN (LABEL letters, digits, - "
                                             f"and +), got {text!r}")
        return label, run_dir

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help=f"image folder (default {DEFAULT_DATA})")
    p.add_argument("--class", dest="class_name", default="malignant")
    p.add_argument("--n-real", type=whole_list, default=[10, 100, 500])
    p.add_argument("--recipes", type=name_list(RECIPE_NAMES, "recipes"))
    p.add_argument("--seeds", type=whole_list, default=[0])
    p.add_argument("--minutes", type=float, default=15.0, help="wall clock per variant")
    p.add_argument("--rank", action="store_true", help="the two-stage plan of the docstring")
    p.add_argument("--rank-minutes", type=float, default=5.0, help="stage 1's budget")
    p.add_argument("--pretrain-class", default="benign",
                   help="transfer recipes: the class pretrained on (default benign)")
    p.add_argument("--pretrain-kimg", type=float, default=200.0,
                   help="transfer recipes: pretraining budget in kimg (default 200)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3),
                   help="1 for a grayscale set (--add-run runs trained with --channels 1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="docs/results/gan_recipes",
                   help="results, samples and RECIPES.md (default docs/results/gan_recipes)")
    p.add_argument("--work", default="runs/gan_recipes", help="the exported generators")
    p.add_argument("--compare", type=lambda t: [x for x in t.split(",") if x], default=[],
                   metavar="LABEL,LABEL", help="--add-run labels to draw beside real images, "
                   "one figure per --n-real and --seed that has them all (with it or "
                   "--add-run, no variant trains unless --recipes is given)")
    p.add_argument("--add-run", action="append", type=labelled_run, default=[],
                   metavar="LABEL=RUN", help="also measure a finished train_gan.py run of "
                   "--class, as row LABEL (repeatable)")
    add_common_flags(p)
    return p


def _main(argv: list[str] | None) -> int:
    from keras_ganaug.study.features import FeatureSpace
    from keras_ganaug.study.grid import StudyConfig

    args = build_parser().parse_args(argv)
    if args.minutes <= 0 or args.rank_minutes <= 0:
        raise UserError("--minutes and --rank-minutes: expected more than 0")
    space = []

    def features():  # trained (or loaded from OUT/feature_extractor) on first use only
        if not space:
            space.append(FeatureSpace(StudyConfig(data=args.data, minority=args.class_name,
                                                  image_size=args.image_size,
                                                  channels=args.channels), Path(args.out)))
        return space[0]

    if args.add_run:
        measure_runs(args, args.add_run, features)
    if args.recipes is None:  # every recipe, unless the call only measures or draws runs
        args.recipes = [] if args.add_run or args.compare else list(RECIPE_NAMES)
    grid = [(r, n, s, args.minutes) for n in args.n_real for r in args.recipes for s in args.seeds]
    if args.rank:
        first = run_variants(args, [(r, RANK_N, s, args.rank_minutes) for r in args.recipes
                                    for s in args.seeds], features)
        best = rank(first)
        print(f"stage 1 (N = {RANK_N}, {args.rank_minutes:g} min): best {', '.join(best)}")
        grid = [(r, n, s, args.minutes) for n in args.n_real for r in best for s in args.seeds]
    run_variants(args, grid, features)
    for figure in write_comparisons(args, args.compare, features) if args.compare else []:
        print(f"wrote {figure}")
    print(f"wrote {write_table(Path(args.out))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Wrong flags, data or classes: one line on stderr and exit code 2, as the package's CLIs."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
